"""pytest entry: run the conformance suite as pytest tests.

    pytest --pyargs conformance --backend package.module:object [--profile torch]
           [--family masks] [--xfails-file known.txt] [--conformance-max-examples 25]

Each golden case and each property is one test (``masks-229-keep_top_k``,
``masks/keep-top-k-count``): a failure shows the diff and the reproduction
snippet, "not provided" is a skip, an id listed in the xfails file is an xfail.
pytest must know the options before it collects anything, so load this module
as a plugin: ``pytest -p conformance.pytest_plugin --pyargs conformance ...``
(installed with the ``pytest11`` entry point it loads by itself; from a
checkout, ``pytest conformance --backend ...`` also works, through
``conformance/conftest.py``). ``--conformance-backend`` and
``--conformance-profile`` are aliases, for when another plugin owns ``--backend``
or ``--profile``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

def _add(group, names: list[str], **kwargs) -> None:
    try:
        group.addoption(*names, **kwargs)
    except ValueError:                                  # a short name is taken by another plugin
        group.addoption(names[0], **kwargs)


def pytest_addoption(parser) -> None:
    if getattr(parser, "_conformance_options", False):  # registered by both the plugin and the conftest
        return
    parser._conformance_options = True
    group = parser.getgroup("conformance", "refprune conformance suite")
    _add(group, ["--conformance-backend", "--backend"], dest="conformance_backend",
         default="conformance.backend:ReferenceBackend",
         help="backend to check, package.module:object (default: the reference)")
    _add(group, ["--conformance-profile", "--profile"], dest="conformance_profile", default="reference",
         help="convention profile the backend claims")
    _add(group, ["--conformance-family", "--family"], dest="conformance_family", action="append",
         help="run only this family (repeatable)")
    _add(group, ["--conformance-xfails-file", "--xfails-file"], dest="conformance_xfails",
         help="file of expected-failure ids")
    group.addoption("--conformance-max-examples", dest="conformance_max_examples", type=int,
                    default=None, help="Hypothesis examples per property (default 25)")
    group.addoption("--conformance-seed", dest="conformance_seed", type=int, default=0,
                    help="Hypothesis seed (default 0)")


def _option(config, name: str, default: Any = None) -> Any:
    return config.getoption(name, default)


def checks(families: list[str] | None) -> list[tuple[str, str, Any]]:
    """Every check of the selected families: (kind, test id, case or (family, property))."""
    from . import golden
    from .families import load_families

    fams = load_families()
    names = list(fams) if not families else families
    out = []
    for name in names:
        path = golden.GOLDEN_DIR / f"{name}.json"
        if Path(path).exists():
            out += [("golden", f"{name}-{c.id}-{c.op}", c) for c in golden.load(path).cases]
        out += [("property", p.name, (fams[name], p)) for p in fams[name].properties]
    return out


def context(config) -> dict[str, Any]:
    """Backend, reference, profile, xfails and Hypothesis settings from the command line."""
    from .backend import ReferenceBackend, load_backend
    from .runner import _profile, default_max_examples, read_xfails

    spec = _option(config, "conformance_backend") or "conformance.backend:ReferenceBackend"
    max_examples = _option(config, "conformance_max_examples")
    return {"spec": spec, "backend": load_backend(spec), "reference": ReferenceBackend(),
            "profile": _profile(_option(config, "conformance_profile") or "reference"),
            "xfails": read_xfails(_option(config, "conformance_xfails")),
            "max_examples": default_max_examples() if max_examples is None else max_examples,
            "seed": _option(config, "conformance_seed") or 0}


def run_check(check: tuple[str, str, Any], ctx: dict[str, Any]) -> None:
    """Run one check and turn its status into a pytest outcome."""
    from .runner import FAILED, NOT_PROVIDED, _applies, run_case, run_property

    kind, _, item = check
    if kind == "golden":
        if not _applies(item, ctx["profile"]):
            pytest.skip(f"computed for another profile than {ctx['profile'].name}")
        res = run_case(item, ctx["backend"], ctx["spec"], ctx["profile"])
    else:
        family, prop = item
        res = run_property(prop, family, ctx["backend"], ctx["reference"], ctx["spec"], ctx["profile"],
                           ctx["max_examples"], ctx["seed"])
    if res.status == NOT_PROVIDED:
        pytest.skip("not provided by the backend")
    listed = res.id in ctx["xfails"]
    if res.status == FAILED:
        text = f"{res.comment}\nflags: {', '.join(res.flags)}\n{res.detail}\nreproduce:\n{res.reproduce}"
        if listed:
            pytest.xfail(f"listed in the xfails file: {res.detail.splitlines()[0] if res.detail else ''}")
        pytest.fail(text, pytrace=False)
