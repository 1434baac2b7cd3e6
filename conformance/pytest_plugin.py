"""pytest entry: run the conformance suite as pytest tests.

    pytest -p conformance.pytest_plugin --pyargs conformance \
        --conformance-backend package.module:object [--conformance-profile torch]
        [--conformance-family masks] [--conformance-xfails-file known.txt]
        [--conformance-max-examples 25] [--conformance-seed 0]

Each golden case and each property is one test (``masks-229-keep_top_k``,
``masks/keep-top-k-count``): a failure shows the diff and the reproduction
snippet, "not provided" is a skip, an id listed in the xfails file is an xfail,
and a session in which the suite checked nothing fails. The backend runs in a
worker process as with ``python -m conformance run`` (``--conformance-backend-cmd``
for a process speaking the wire protocol, ``--conformance-in-process`` to call
it directly, ``--conformance-timeout`` per call). Every option is prefixed
``--conformance-``, since the plugin is registered for every pytest run of an
environment where the package is installed. pytest must know the options before
it collects anything, so load this module as a plugin: ``pytest -p
conformance.pytest_plugin --pyargs conformance ...`` (installed with the
``pytest11`` entry point it loads by itself; from a checkout, ``pytest
conformance --conformance-backend ...`` also works, through
``conformance/conftest.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

_STASH_KEY = "_conformance_outcomes"


def pytest_addoption(parser: Any) -> None:
    if getattr(parser, "_conformance_options", False):  # registered by the plugin and the conftest
        return
    parser._conformance_options = True
    from .wire import DEFAULT_TIMEOUT

    group = parser.getgroup("conformance", "refprune conformance suite")
    group.addoption(
        "--conformance-backend",
        dest="conformance_backend",
        default=None,
        help="backend to check, package.module:object, run in a worker process "
        "(default: the reference)",
    )
    group.addoption(
        "--conformance-backend-cmd",
        dest="conformance_backend_cmd",
        default=None,
        help="command of a backend process speaking the wire protocol",
    )
    group.addoption(
        "--conformance-in-process",
        dest="conformance_in_process",
        action="store_true",
        help="call the backend in the pytest process (debugging)",
    )
    group.addoption(
        "--conformance-timeout",
        dest="conformance_timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"time limit of one call to a backend process (default {DEFAULT_TIMEOUT:g})",
    )
    group.addoption(
        "--conformance-profile",
        dest="conformance_profile",
        default=None,
        help="convention profile the backend claims",
    )
    group.addoption(
        "--conformance-family",
        dest="conformance_family",
        action="append",
        help="run only this family (repeatable)",
    )
    group.addoption(
        "--conformance-xfails-file", dest="conformance_xfails", help="file of expected-failure ids"
    )
    group.addoption(
        "--conformance-max-examples",
        dest="conformance_max_examples",
        type=int,
        default=None,
        help="Hypothesis examples per property (default 25)",
    )
    group.addoption(
        "--conformance-seed",
        dest="conformance_seed",
        type=int,
        default=0,
        help="Hypothesis seed (default 0)",
    )
    group.addoption(
        "--conformance-golden-dir",
        dest="conformance_golden_dir",
        default=None,
        help="golden directory to run (default: the installed one); verified first",
    )


def _option(config: Any, name: str, default: Any = None) -> Any:
    return config.getoption(name, default)


def _golden_dir(config: Any) -> Path:
    from . import golden

    return Path(_option(config, "conformance_golden_dir") or golden.GOLDEN_DIR)


def checks(
    families: list[str] | None, golden_dir: Path | str | None = None
) -> list[tuple[str, str, Any]]:
    """Every check of the selected families: (kind, test id, case or (family, property)).

    The golden directory is verified first (``runner.check_golden_dir``): a
    refused directory is a usage error.
    """
    from . import golden
    from .families import load_families
    from .runner import GoldenDirError, check_golden_dir

    fams = load_families()
    names = list(fams) if not families else families
    unknown = [f for f in names if f not in fams]
    if unknown:
        raise pytest.UsageError(
            f"unknown conformance families {unknown}; expected some of {list(fams)}"
        )
    try:
        files = check_golden_dir(golden.GOLDEN_DIR if golden_dir is None else golden_dir, fams)
    except GoldenDirError as exc:
        raise pytest.UsageError(str(exc)) from None
    out: list[tuple[str, str, Any]] = []
    for name in names:
        out += [("golden", f"{name}-{c.id}-{c.op}", c) for c in files[name].cases]
        out += [("property", p.name, (fams[name], p)) for p in fams[name].properties]
    return out


def context(config: Any) -> dict[str, Any]:
    """Backend, reference, profile, xfails and Hypothesis settings from the command line.

    The backend's process (if any) is started here; ``ctx["target"].close()`` stops it.
    """
    from . import golden
    from .backend import ReferenceBackend
    from .runner import _profile, claimed_profile, default_max_examples, open_backend, read_xfails

    max_examples = _option(config, "conformance_max_examples")
    profile = _option(config, "conformance_profile")
    try:
        target = open_backend(
            _option(config, "conformance_backend"),
            backend_cmd=_option(config, "conformance_backend_cmd"),
            in_process=_option(config, "conformance_in_process"),
            profile=profile,
            timeout=_option(config, "conformance_timeout"),
        )
        prof = _profile(claimed_profile(target, profile))
    except (ValueError, TypeError, ImportError, OSError) as exc:
        raise pytest.UsageError(f"conformance backend: {exc}") from None
    golden_dir = _golden_dir(config)
    if golden_dir.resolve() != golden.GOLDEN_DIR.resolve():
        target.golden_dir = str(golden_dir)
    return {
        "target": target,
        "reference": ReferenceBackend(),
        "profile": prof,
        "xfails": read_xfails(_option(config, "conformance_xfails")),
        "max_examples": default_max_examples() if max_examples is None else max_examples,
        "seed": _option(config, "conformance_seed") or 0,
    }


def run_check(check: tuple[str, str, Any], ctx: dict[str, Any]) -> None:
    """Run one check and turn its status into a pytest outcome."""
    from .runner import FAILED, NOT_PROVIDED, _applies, run_case, run_property

    kind, _, item = check
    if kind == "golden":
        if not _applies(item, ctx["profile"]):
            pytest.skip(f"computed for another profile than {ctx['profile'].name}")
        res = run_case(item, ctx["target"], ctx["profile"])
    else:
        family, prop = item
        res = run_property(
            prop,
            family,
            ctx["target"],
            ctx["reference"],
            ctx["profile"],
            ctx["max_examples"],
            ctx["seed"],
        )
    if res.status == NOT_PROVIDED:
        pytest.skip("not provided by the backend")
    checked = ctx.setdefault("checked", [0])
    checked[0] += 1
    listed = res.id in ctx["xfails"]
    if res.status == FAILED:
        text = (
            f"{res.comment}\nflags: {', '.join(res.flags)}\n{res.detail}\n"
            f"reproduce:\n{res.reproduce}"
        )
        if listed:
            pytest.xfail(
                "listed in the xfails file: " + (res.detail.splitlines()[0] if res.detail else "")
            )
        pytest.fail(text, pytrace=False)


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    """A session that ran conformance checks but checked nothing fails ("nothing was checked")."""
    ctx = getattr(session.config, "_conformance_context", None)
    if ctx is None or ctx.get("checked", [0])[0] > 0 or exitstatus not in (0, 5):
        return
    session.config._conformance_nothing_checked = True
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    if getattr(config, "_conformance_nothing_checked", False) and not getattr(
        config, "_conformance_said_so", False
    ):
        config._conformance_said_so = True  # the hook may be registered twice
        terminalreporter.write_line(
            "conformance: nothing was checked: the backend provides none of the operations "
            "the selected checks need",
            red=True,
        )
