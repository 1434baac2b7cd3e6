"""Run the suite on a backend: the golden cases, then the Hypothesis properties.

``run(...)`` returns a ``Report``; ``python -m conformance run`` and the pytest
plugin are thin layers over it. Each check ends in one status:

passed        the backend's answer matches
failed        it does not (or the backend raised): an unexpected failure
expected-fail it does not, and the check's id is in the xfails file
xpass         it matches although the xfails file lists it
not provided  the backend has no such method, or raised ``NotProvided``

Golden cases are identified by their integer id, properties by their name
(``family/short-name``); an xfails file lists either, one per line, with
``#`` comments.
"""

from __future__ import annotations

import copy
import json
import os
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from . import golden
from .backend import OPERATIONS, NotProvided, ReferenceBackend, backend_name, load_backend, provides
from .compare import compare
from .families import Checker, Family, Property, load_families

PASSED, FAILED, XFAIL, XPASS, NOT_PROVIDED = "passed", "failed", "expected-fail", "xpass", "not provided"
STATUSES = (PASSED, FAILED, XFAIL, XPASS, NOT_PROVIDED)
DEFAULT_MAX_EXAMPLES = 25


@dataclass
class Result:
    family: str
    kind: str                     # "golden" or "property"
    id: str                       # golden: the case id; property: its name
    op: str
    status: str
    flags: list[str] = field(default_factory=list)
    comment: str = ""
    detail: str = ""
    reproduce: str = ""
    seconds: float = 0.0


@dataclass
class Report:
    backend: str
    backend_spec: str
    profile: str
    seed: int
    max_examples: int
    results: list[Result] = field(default_factory=list)
    unmatched_xfails: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def failures(self) -> list[Result]:
        return [r for r in self.results if r.status == FAILED]

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> dict[str, dict[str, dict[str, int]]]:
        """family -> kind -> status -> count."""
        out: dict[str, dict[str, dict[str, int]]] = {}
        for r in self.results:
            row = out.setdefault(r.family, {}).setdefault(r.kind, {s: 0 for s in STATUSES})
            row[r.status] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {"backend": self.backend, "backend_spec": self.backend_spec, "profile": self.profile,
                "seed": self.seed, "max_examples": self.max_examples, "ok": self.ok,
                "summary": self.summary(), "seconds": self.seconds,
                "unmatched_xfails": self.unmatched_xfails,
                "results": [asdict(r) for r in self.results]}


# --------------------------------------------------------------------------- xfails and profiles
def read_xfails(path: str | Path | None) -> set[str]:
    """Ids listed in an xfails file: one golden case id or property name per line, '#' comments."""
    if path is None:
        return set()
    out = set()
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        item = line.split("#", 1)[0].strip()
        if item:
            out.add(item)
    return out


def _profile(name: str):
    from .conventions import get_profile
    return get_profile(name)


def tie_check_for(profile: Any):
    """None under a deterministic tie rule; otherwise masks are compared up to ties."""
    if profile.deterministic_ties:
        return None
    from .conventions import equal_up_to_ties
    return lambda expected, actual, scores, alive=None: equal_up_to_ties(expected, actual, scores, alive)


def _case_tie_check(case: golden.Case, profile: Any):
    if case.family == "profiles":                     # the profile's own rule (|score| where it ranks |score|)
        return lambda e, a, s, al=None: profile.masks_match(e, a, s, alive=al)
    return tie_check_for(profile)


# --------------------------------------------------------------------------- reproduction snippets
def py_literal(value: Any) -> str:
    """Python source that rebuilds ``value`` exactly (arrays via numpy, floats by repr)."""
    if isinstance(value, np.ndarray):
        if value.dtype == np.bool_:
            body, dtype = repr(value.ravel().tolist()), "bool"
        elif value.dtype.kind in "iu":
            body, dtype = repr([int(v) for v in value.ravel()]), "np.int64"
        else:
            body, dtype = "[" + ", ".join(repr(float(v)) for v in value.ravel()) + "]", "np.float64"
        return f"np.array({body}, dtype={dtype}).reshape({tuple(value.shape)!r})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {py_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        items = ", ".join(py_literal(v) for v in value)
        return f"[{items}]" if isinstance(value, list) else f"({items}{',' if len(value) == 1 else ''})"
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, (np.integer,)):
        return repr(int(value))
    return repr(value)


def _call_snippet(spec: str, calls: list[tuple[str, dict[str, Any]]], limit: int = 6000) -> str:
    lines = ["import numpy as np",
             "from conformance.backend import ReferenceBackend, load_backend",
             f"backend, reference = load_backend({spec!r}), ReferenceBackend()"]
    for op, kwargs in calls:
        args = ", ".join(f"{k}={py_literal(v)}" for k, v in kwargs.items())
        lines.append(f"args = dict({args})")
        lines.append(f"print(backend.{op}(**args))")
        lines.append(f"print(reference.{op}(**args))")
    text = "\n".join(lines)
    if len(text) > limit:
        return text[:limit] + "\n# ... (truncated; use the command above)"
    return text


def golden_snippet(spec: str, case: golden.Case, profile: str) -> str:
    prof = "" if profile == "reference" else f" --profile {profile}"
    return (f"python -m conformance run --backend {spec}{prof} --case {case.id}\n"
            "# or, in Python:\n"
            "from conformance.backend import load_backend\n"
            "from conformance.runner import golden_case\n"
            f"case = golden_case({case.id})\n"
            f"print(load_backend({spec!r}).{case.op}(**case.inputs))\n"
            "print(case.expected)")


def property_snippet(spec: str, prop: Property, profile: str, seed: int, max_examples: int,
                     calls: list[tuple[str, dict[str, Any]]]) -> str:
    prof = "" if profile == "reference" else f" --profile {profile}"
    head = (f"python -m conformance run --backend {spec}{prof} --property {prop.name} "
            f"--seed {seed} --max-examples {max_examples}")
    if not calls:
        return head
    return head + "\n# or call the backend with the falsifying example:\n" + _call_snippet(spec, calls)


# --------------------------------------------------------------------------- golden cases
def golden_case(case_id: int, directory: Path | str = golden.GOLDEN_DIR) -> golden.Case:
    """The golden case with this id, from whichever family holds it."""
    for path in golden.family_files(directory):
        for case in golden.load(path).cases:
            if case.id == int(case_id):
                return case
    raise ValueError(f"no golden case has id {case_id}")


def _mutated(before: Any, after: Any) -> bool:
    if isinstance(before, dict):
        return any(_mutated(before[k], after.get(k)) for k in before)
    if isinstance(before, list):
        return any(_mutated(b, a) for b, a in zip(before, after))
    if isinstance(before, np.ndarray):
        return not (isinstance(after, np.ndarray) and after.shape == before.shape
                    and np.array_equal(before.view(np.uint8) if before.dtype.kind == "f" else before,
                                       after.view(np.uint8) if after.dtype.kind == "f" else after))
    return False


def run_case(case: golden.Case, backend: Any, spec: str, profile: Any) -> Result:
    res = Result(family=case.family, kind="golden", id=str(case.id), op=case.op, status=PASSED,
                 flags=list(case.flags), comment=case.comment)
    if not provides(backend, case.op):
        res.status = NOT_PROVIDED
        return res
    start = time.perf_counter()
    inputs = copy.deepcopy(case.inputs)
    try:
        actual = getattr(backend, case.op)(**inputs)
    except NotProvided:
        res.status = NOT_PROVIDED
        return res
    except Exception as exc:  # noqa: BLE001 - any exception of the backend is a failure
        res.status = FAILED
        res.detail = f"{case.op} raised {type(exc).__name__}: {exc}\n" + _short_traceback(exc)
    else:
        output = OPERATIONS[case.op].output
        diff = compare(case.expected[output], actual, case.tolerance[output], where=output,
                       inputs=case.inputs, tie_check=_case_tie_check(case, profile))
        changed = [k for k in case.inputs if _mutated(case.inputs[k], inputs[k])]
        if changed:
            diff = (diff + "\n" if diff else "") + f"{case.op} modified its arguments {changed}"
        if diff:
            res.status, res.detail = FAILED, diff
    res.seconds = time.perf_counter() - start
    if res.status == FAILED:
        res.reproduce = golden_snippet(spec, case, profile.name)
    return res


def _short_traceback(exc: BaseException, frames: int = 3) -> str:
    tb = traceback.extract_tb(exc.__traceback__)[-frames:]
    return "".join(traceback.format_list(tb))


def _applies(case: golden.Case, profile: Any) -> bool:
    """Profile cases run only under the profile they were computed for."""
    if case.family != "profiles":
        return True
    return f"profile:{profile.name}" in case.flags


# --------------------------------------------------------------------------- properties
def run_property(prop: Property, family: Family, backend: Any, reference: Any, spec: str,
                 profile: Any, max_examples: int, seed: int, shrink: bool = True) -> Result:
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis import seed as hseed

    res = Result(family=family.name, kind="property", id=prop.name, op=",".join(prop.ops),
                 status=PASSED, comment=prop.summary)
    if not all(provides(backend, op) for op in prop.ops):
        res.status = NOT_PROVIDED
        return res
    checker = Checker(family, backend, reference, tie_check_for(profile), profile)
    counts = {"run": 0, "not_provided": 0}

    def body(example):
        checker.begin()
        try:
            prop.check(checker, example)
        except NotProvided:
            counts["not_provided"] += 1
            return
        counts["run"] += 1

    test = given(prop.strategy)(body)
    test = settings(max_examples=max_examples, database=None, deadline=None, derandomize=False,
                    suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet,
                    print_blob=False, report_multiple_bugs=False,
                    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target]
                    + ([Phase.shrink] if shrink else []))(test)
    test = hseed(seed)(test)
    start = time.perf_counter()
    try:
        test()
    except Exception as exc:  # noqa: BLE001 - a failing property, or the backend raising
        res.status = FAILED
        notes = "\n".join(getattr(exc, "__notes__", []))
        kind = "" if isinstance(exc, AssertionError) else f"{type(exc).__name__}: "
        res.detail = f"{kind}{exc}" + (f"\n{notes}" if notes else "")
        if not isinstance(exc, AssertionError):
            res.detail += "\n" + _short_traceback(exc)
        res.reproduce = property_snippet(spec, prop, profile.name, seed, max_examples, checker.calls)
    else:
        if counts["run"] == 0:
            res.status = NOT_PROVIDED
    res.seconds = time.perf_counter() - start
    return res


# --------------------------------------------------------------------------- the run
def run(backend: Any, *, backend_spec: str | None = None, profile: str = "reference",
        families: Iterable[str] | None = None, max_examples: int = DEFAULT_MAX_EXAMPLES,
        seed: int = 0, xfails: Iterable[str] = (), golden_cases: bool = True,
        properties: bool = True, case_ids: Iterable[int] | None = None,
        property_names: Iterable[str] | None = None,
        golden_dir: Path | str = golden.GOLDEN_DIR, progress=None, shrink: bool = True) -> Report:
    """Run the selected checks on ``backend`` (an object, or a "module:object" string).

    ``shrink=False`` reports the first failing example Hypothesis finds instead of the
    smallest (faster; the reproduction command then reruns the same search).
    """
    spec = backend_spec or (backend if isinstance(backend, str) else
                            f"{type(backend).__module__}:{type(backend).__qualname__}")
    backend = load_backend(backend)
    prof = _profile(profile)
    all_families = load_families()
    names = list(all_families) if families is None else list(families)
    unknown = [f for f in names if f not in all_families]
    if unknown:
        raise ValueError(f"unknown families {unknown}; expected some of {list(all_families)}")
    if isinstance(max_examples, bool) or not isinstance(max_examples, int) or max_examples < 1:
        raise ValueError(f"max_examples must be an integer >= 1, got {max_examples!r}")
    xfails = set(xfails)
    case_ids = None if case_ids is None else {int(i) for i in case_ids}
    property_names = None if property_names is None else set(property_names)
    known = _all_ids(golden_dir, all_families)
    missing = sorted(str(i) for i in (case_ids or ()) if str(i) not in known) + \
        sorted(p for p in (property_names or ()) if p not in known)
    if missing:
        raise ValueError(f"no golden case or property is called {', '.join(missing)}")
    if case_ids is not None and property_names is None:
        properties = False
    if property_names is not None and case_ids is None:
        golden_cases = False
    report = Report(backend=backend_name(backend), backend_spec=spec, profile=prof.name, seed=seed,
                    max_examples=max_examples)
    reference = ReferenceBackend()
    t0 = time.perf_counter()
    matched: set[str] = set()
    if golden_cases:
        for name in names:
            path = Path(golden_dir) / f"{name}.json"
            if not path.exists():
                continue
            for case in golden.load(path).cases:
                if (case_ids is not None and case.id not in case_ids) or not _applies(case, prof):
                    continue
                res = run_case(case, backend, spec, prof)
                _apply_xfail(res, xfails, matched)
                report.results.append(res)
                if progress:
                    progress(res)
    t1 = time.perf_counter()
    if properties:
        for name in names:
            for prop in all_families[name].properties:
                if property_names is not None and prop.name not in property_names:
                    continue
                res = run_property(prop, all_families[name], backend, reference, spec, prof,
                                   max_examples, seed, shrink)
                _apply_xfail(res, xfails, matched)
                report.results.append(res)
                if progress:
                    progress(res)
    t2 = time.perf_counter()
    report.unmatched_xfails = sorted(x for x in xfails if x not in known)
    report.seconds = {"golden": round(t1 - t0, 3), "properties": round(t2 - t1, 3),
                      "total": round(t2 - t0, 3)}
    return report


def _all_ids(golden_dir: Path | str, families: dict[str, Family]) -> set[str]:
    """Every id that could match an xfails entry (golden ids of every family, property names)."""
    ids = {p.name for f in families.values() for p in f.properties}
    for path in golden.family_files(golden_dir):
        ids |= {str(c.id) for c in golden.load(path).cases}
    return ids


def _apply_xfail(res: Result, xfails: set[str], matched: set[str]) -> None:
    if res.id not in xfails:
        return
    matched.add(res.id)
    if res.status == FAILED:
        res.status = XFAIL
    elif res.status == PASSED:
        res.status = XPASS


# --------------------------------------------------------------------------- printing
def format_report(report: Report, *, verbose_failures: bool = True) -> str:
    lines = [f"conformance of {report.backend} ({report.backend_spec}), profile {report.profile}, "
             f"Hypothesis seed {report.seed}, {report.max_examples} examples per property", ""]
    head = f"{'family':<14} {'kind':<9} {'passed':>7} {'failed':>7} {'exp-fail':>8} {'xpass':>6} {'not provided':>13}"
    lines += [head, "-" * len(head)]
    totals = {s: 0 for s in STATUSES}
    for family, kinds in report.summary().items():
        for kind, row in kinds.items():
            lines.append(f"{family:<14} {kind:<9} {row[PASSED]:>7} {row[FAILED]:>7} {row[XFAIL]:>8} "
                         f"{row[XPASS]:>6} {row[NOT_PROVIDED]:>13}")
            for s in STATUSES:
                totals[s] += row[s]
    lines.append("-" * len(head))
    lines.append(f"{'total':<14} {'':<9} {totals[PASSED]:>7} {totals[FAILED]:>7} {totals[XFAIL]:>8} "
                 f"{totals[XPASS]:>6} {totals[NOT_PROVIDED]:>13}")
    if verbose_failures and report.failures:
        lines += ["", f"{len(report.failures)} unexpected failure(s):"]
        for r in report.failures:
            title = f"case {r.id}" if r.kind == "golden" else f"property {r.id}"
            flags = f" [{', '.join(r.flags)}]" if r.flags else ""
            lines += ["", f"FAILED {r.family} {title}: {r.op}{flags}", f"  {r.comment}"]
            lines += ["  " + line for line in r.detail.rstrip().splitlines()]
            lines += ["  reproduce:"] + ["    " + line for line in r.reproduce.splitlines()]
    xpass = [r.id for r in report.results if r.status == XPASS]
    if xpass:
        lines += ["", f"listed as expected failures but passed: {', '.join(xpass)}"]
    if report.unmatched_xfails:
        lines += ["", f"xfails entries that match no check: {', '.join(report.unmatched_xfails)}"]
    s = report.seconds
    lines += ["", f"time: golden {s.get('golden', 0):.2f} s, properties {s.get('properties', 0):.2f} s, "
                  f"total {s.get('total', 0):.2f} s",
              "result: " + ("OK" if report.ok else f"FAILED ({len(report.failures)} unexpected)")]
    return "\n".join(lines)


def write_report(report: Report, path: str | Path) -> None:
    Path(path).write_text(json.dumps(report.to_json(), indent=1, sort_keys=True) + "\n", encoding="utf-8")


def default_max_examples() -> int:
    return int(os.environ.get("CONFORMANCE_MAX_EXAMPLES", DEFAULT_MAX_EXAMPLES))
