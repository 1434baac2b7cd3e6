"""Run the suite on a backend: the golden cases, then the Hypothesis properties.

``run(...)`` returns a ``Report``; ``python -m conformance run`` and the pytest
plugin are thin layers over it. Each check ends in one status:

passed        the backend's answer matches
failed        it does not (or the backend raised, crashed, hung, or modified an argument)
expected-fail it does not, and the check's id is in the xfails file
xpass         it matches although the xfails file lists it
not provided  the backend has no such method, or raised ``NotProvided``

Golden cases are identified by their integer id, properties by their name
(``family/short-name``); an xfails file lists either, one per line, with
``#`` comments.

Before anything runs, the golden directory is verified (``check_golden_dir``:
manifest digests, no file missing or extra, schema and generator versions, the
lint), and a run that checked nothing is not OK.

Where the backend runs: a backend named by a ``"module:object"`` string runs in
a worker process (``python -m conformance serve``) over the wire protocol of
``conformance.wire``, as a backend in another language does (``backend_cmd``),
so a crash, an exit or a hang fails one check and the run goes on. A backend
passed as a Python object, or with ``in_process=True``, is called directly:
nothing then protects the run from it (for debugging).
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
import json
import multiprocessing
import os
import shlex
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import golden
from .backend import OPERATIONS, NotProvided, ReferenceBackend, backend_name, load_backend, provides
from .compare import compare
from .families import Checker, Family, Property, load_families
from .wire import (
    DEFAULT_TIMEOUT,
    START_TIMEOUT,
    BackendError,
    ProcessBackend,
    ProcessFailure,
    changed_arguments,
    child_environment,
    dumps,
    serve_command,
    snapshot,
)

PASSED, FAILED, XFAIL, XPASS, NOT_PROVIDED = (
    "passed",
    "failed",
    "expected-fail",
    "xpass",
    "not provided",
)
STATUSES = (PASSED, FAILED, XFAIL, XPASS, NOT_PROVIDED)
CHECKED = (PASSED, FAILED, XFAIL, XPASS)
DEFAULT_MAX_EXAMPLES = 25
REFERENCE_SPEC = "conformance.backend:ReferenceBackend"


@dataclass
class Result:
    family: str
    kind: str  # "golden" or "property"
    id: str  # golden: the case id; property: its name
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
    operations: list[str] = field(default_factory=list)
    isolation: str = "in-process"  # or "process": every call went over the wire protocol
    restarts: int = 0  # backend processes started again after a failure

    @property
    def failures(self) -> list[Result]:
        return [r for r in self.results if r.status == FAILED]

    @property
    def checked(self) -> int:
        """Checks that compared an answer of the backend (passed, failed, xfail, xpass)."""
        return sum(r.status in CHECKED for r in self.results)

    @property
    def ok(self) -> bool:
        return not self.failures and self.checked > 0

    def summary(self) -> dict[str, dict[str, dict[str, int]]]:
        """family -> kind -> status -> count."""
        out: dict[str, dict[str, dict[str, int]]] = {}
        for r in self.results:
            row = out.setdefault(r.family, {}).setdefault(r.kind, {s: 0 for s in STATUSES})
            row[r.status] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "backend_spec": self.backend_spec,
            "profile": self.profile,
            "seed": self.seed,
            "max_examples": self.max_examples,
            "ok": self.ok,
            "checked": self.checked,
            "operations": self.operations,
            "isolation": self.isolation,
            "restarts": self.restarts,
            "summary": self.summary(),
            "seconds": self.seconds,
            "unmatched_xfails": self.unmatched_xfails,
            "results": [asdict(r) for r in self.results],
        }


# --------------------------------------------------------------------------- the backend
@dataclass
class Target:
    """The backend under test and how to name it in a reproduction command.

    ``backend`` has the operations as methods (a ``ProcessBackend`` for a
    process); ``spec`` is the ``module:object`` of a Python backend (None for a
    command); ``option`` is the run command's option that selects it.
    """

    backend: Any
    spec: str | None
    option: str
    process: ProcessBackend | None = None
    label: str = ""  # how the report's header names it
    golden_dir: str | None = None  # a golden directory other than the installed one

    def close(self) -> None:
        if self.process is not None:
            self.process.close()

    def command(self, profile: str, extra: str) -> str:
        prof = "" if profile == "reference" else f" --profile {profile}"
        where = "" if self.golden_dir is None else f" --golden-dir {shlex.quote(self.golden_dir)}"
        return f"python -m conformance run {self.option}{prof}{where} {extra}"


def open_backend(
    backend: Any = None,
    *,
    backend_spec: str | None = None,
    backend_cmd: str | Sequence[str] | None = None,
    in_process: bool | None = None,
    profile: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    start_timeout: float = START_TIMEOUT,
    wait: bool = True,
) -> Target:
    """The backend to check, started in its process where it runs in one.

    A string ``backend`` ("module:object") runs in a worker process unless
    ``in_process``; a Python object runs in this process; ``backend_cmd`` is the
    command of a process speaking the wire protocol. Raises ``ValueError``
    (``HandshakeError``) when the process cannot start or its hello is wrong.
    ``wait=False`` returns once the process is started; ``target.process.handshake()``
    then reads its hello.
    """
    if backend_cmd is not None:
        if backend is not None or in_process:
            raise ValueError(
                "a backend command runs in its own process: give no other backend, "
                "and not in-process"
            )
        argv = shlex.split(backend_cmd) if isinstance(backend_cmd, str) else list(backend_cmd)
        if not argv:
            raise ValueError("the backend command is empty")
        label = backend_cmd if isinstance(backend_cmd, str) else shlex.join(argv)
        process = ProcessBackend(argv, timeout=timeout, start_timeout=start_timeout, label=label)
        target = Target(process, None, f"--backend-cmd {shlex.quote(label)}", process, label)
    elif (backend is None or isinstance(backend, str)) and not in_process:
        spec = REFERENCE_SPEC if backend is None else backend
        if ":" not in spec:
            raise ValueError(f"backend must look like 'package.module:object', got {spec!r}")
        process = ProcessBackend(
            serve_command(spec, profile),
            timeout=timeout,
            start_timeout=start_timeout,
            env=child_environment(),
            label=f"serve {spec}",
        )
        target = Target(process, spec, f"--backend {spec}", process, f"{spec}, in a worker process")
    else:
        backend = REFERENCE_SPEC if backend is None else backend
        spec = backend_spec or (
            backend
            if isinstance(backend, str)
            else f"{type(backend).__module__}:{type(backend).__qualname__}"
        )
        option = f"--backend {spec}" + (" --in-process" if in_process else "")
        return Target(load_backend(backend), spec, option, None, f"{spec}, in-process")
    if wait:
        process.start()
    else:
        process.launch()
    return target


def claimed_profile(target: Target, profile: str | None) -> str:
    """The profile to check under: the one asked for, which a process must claim in its hello."""
    if target.process is not None:
        claimed = target.process.profile
        if profile is not None and profile != claimed:
            raise ValueError(
                f"the backend claims the profile {claimed!r} in its hello, "
                f"but the profile {profile!r} was asked for"
            )
        return claimed
    if profile is not None:
        return profile
    attr = getattr(target.backend, "profile", None)
    return attr if isinstance(attr, str) else "reference"


# --------------------------------------------------------------------------- the golden directory
class GoldenDirError(ValueError):
    """The golden directory failed its checks; the message names each file and what is wrong."""


def check_golden_dir(
    directory: Path | str = golden.GOLDEN_DIR, families: Iterable[str] | None = None
) -> dict[str, golden.GoldenFile]:
    """The decoded family files of ``directory``, after verifying everything a run relies on.

    ``MANIFEST.txt`` (every SHA-256, no file missing or extra), a file for every
    family and no file for an unknown one, each file's JSON, ``schema_version``,
    ``generator_version``, header fields, and every case's fields and value
    encodings. Raises ``GoldenDirError`` listing every problem.
    """
    from .generate import GENERATOR_VERSION

    directory = Path(directory)
    if not directory.is_dir():
        raise GoldenDirError(f"the golden directory {directory} does not exist")
    known = list(load_families() if families is None else families)
    problems = golden.verify_manifest(directory)
    paths = {p.stem: p for p in golden.family_files(directory)}
    problems += [
        f"{name}.json is missing (the {name} family's golden cases)"
        for name in known
        if name not in paths
    ]
    problems += [
        f"{p.name}: no family of the suite is called {name!r}"
        for name, p in paths.items()
        if name not in known
    ]
    files: dict[str, golden.GoldenFile] = {}
    for name, path in paths.items():
        found = _file_problems(path, GENERATOR_VERSION)
        if not found:
            try:
                files[name] = golden.load(path)
            except Exception as exc:  # noqa: BLE001 - whatever the checks above missed, named
                found = [f"{path.name}: cannot be read ({type(exc).__name__}: {exc})"]
        problems += found
    if problems:
        shown = problems[:20] + (
            [f"... and {len(problems) - 20} more"] if len(problems) > 20 else []
        )
        raise GoldenDirError(
            f"refusing the golden directory {directory}: "
            f"{len(problems)} problem(s)\n  " + "\n  ".join(shown)
        )
    return files


def _file_problems(path: Path, generator_version: str) -> list[str]:
    """What a run needs of one family file: JSON, versions, header, every case's fields and values.

    (The full lint, ``python -m conformance lint``, checks more, and more slowly.)
    """
    if path.stat().st_size == 0:
        return [f"{path.name}: the file is empty"]
    try:
        data = json.loads(path.read_bytes().decode("ascii"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [f"{path.name}: not ASCII JSON, truncated or corrupted ({exc})"]
    if not isinstance(data, dict):
        return [f"{path.name}: malformed: the file holds a {type(data).__name__}, not an object"]
    missing = [k for k in golden.REQUIRED_HEADER if k not in data]
    if missing:
        return [f"{path.name}: missing header field(s) {missing}"]
    problems = []
    if data["schema_version"] != golden.SCHEMA_VERSION:
        problems.append(
            f"{path.name}: schema_version {data['schema_version']!r} != "
            f"{golden.SCHEMA_VERSION} (a format this runner does not read)"
        )
    if data["generator_version"] != generator_version:
        problems.append(
            f"{path.name}: generator_version {data['generator_version']!r} != "
            f"{generator_version!r} (written by another version of the generator)"
        )
    if data["family"] != path.stem:
        problems.append(f"{path.name}: family {data['family']!r} does not match the file name")
    cases = data["cases"]
    if not isinstance(cases, list) or not cases:
        return problems + [f"{path.name}: malformed: cases must be a non-empty list"]
    if data["number_of_cases"] != len(cases):
        problems.append(
            f"{path.name}: number_of_cases {data['number_of_cases']!r} != "
            f"{len(cases)} cases (a case was removed or added)"
        )
    for i, case in enumerate(cases):
        problems += _case_problems(path.name, i, case)
    return problems


def _case_problems(file: str, index: int, case: Any) -> list[str]:
    if not isinstance(case, dict):
        return [f"{file}: malformed: case number {index + 1} is a {type(case).__name__}"]
    where = f"{file} case {case.get('id', f'number {index + 1} (no id)')}"
    missing = [k for k in golden.REQUIRED_CASE if k not in case]
    if missing:
        return [
            f"{where}: missing field{'s' if len(missing) > 1 else ''} "
            + ", ".join(repr(k) for k in missing)
        ]
    op = OPERATIONS.get(case["op"]) if isinstance(case["op"], str) else None
    if op is None:
        return [f"{where}: unknown op {case['op']!r}"]
    for part in ("inputs", "expected", "tolerance"):
        if not isinstance(case[part], dict):
            return [f"{where}: malformed: {part} must be an object"]
    if op.output not in case["expected"] or op.output not in case["tolerance"]:
        return [f"{where}: expected and tolerance must hold {op.output!r}"]
    problems: list[str] = []
    for part in ("inputs", "expected"):
        golden._check_value(case[part], f"{where} {part}", problems)
    return problems


def golden_case(case_id: int, directory: Path | str = golden.GOLDEN_DIR) -> golden.Case:
    """The golden case with this id, from whichever family holds it."""
    for path in golden.family_files(directory):
        for case in golden.load(path).cases:
            if case.id == int(case_id):
                return case
    raise ValueError(f"no golden case has id {case_id}")


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


def _profile(name: str) -> Any:
    from .conventions import get_profile

    return get_profile(name)


def tie_check_for(profile: Any) -> Callable[..., bool] | None:
    """None under a deterministic tie rule; otherwise masks are compared up to ties."""
    if profile.deterministic_ties:
        return None
    from .conventions import equal_up_to_ties

    return lambda expected, actual, scores, alive=None: equal_up_to_ties(
        expected, actual, scores, alive
    )


def _case_tie_check(case: golden.Case, profile: Any) -> Callable[..., bool] | None:
    if case.family == "profiles":  # the profile's own rule (|score| where it ranks |score|)
        return lambda e, a, s, al=None: profile.masks_match(e, a, s, alive=al)
    return tie_check_for(profile)


# --------------------------------------------------------------------------- reproduction snippets
SNIPPET_LIMIT = 6000


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
        return (
            f"[{items}]"
            if isinstance(value, list)
            else f"({items}{',' if len(value) == 1 else ''})"
        )
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, (np.integer,)):
        return repr(int(value))
    return repr(value)


def _call_snippet(
    spec: str, calls: list[tuple[str, dict[str, Any]]], limit: int = SNIPPET_LIMIT
) -> str:
    lines = [
        "import numpy as np",
        "from conformance.backend import ReferenceBackend, load_backend",
        f"backend, reference = load_backend({spec!r}), ReferenceBackend()",
    ]
    for op, kwargs in calls:
        args = ", ".join(f"{k}={py_literal(v)}" for k, v in kwargs.items())
        lines.append(f"args = dict({args})")
        lines.append(f"print(backend.{op}(**args))")
        lines.append(f"print(reference.{op}(**args))")
    text = "\n".join(lines)
    if len(text) > limit:
        return text[:limit] + "\n# ... (truncated; use the command above)"
    return text


def _wire_snippet(calls: list[tuple[str, dict[str, Any], Any]]) -> str:
    """The call lines to send to a backend process, each with the reference's answer."""
    lines = [
        "# or send these lines to the backend process's stdin, after reading its hello line;",
        "# each is followed by the reference's answer:",
    ]
    for i, (op, args, expected) in enumerate(calls, start=1):
        lines.append(dumps({"type": "call", "id": i, "op": op, "args": args}))
        if expected is not None:
            lines.append("# " + dumps({"type": "result", "id": i, "value": expected}))
    return "\n".join(lines)


def golden_snippet(target: Target, case: golden.Case, profile: str) -> str:
    head = target.command(profile, f"--case {case.id}")
    if target.spec is None:
        output = OPERATIONS[case.op].output
        return (
            head
            + "\n"
            + _wire_snippet([(case.op, case.raw["inputs"], case.raw["expected"][output])])
        )
    return (
        f"{head}\n"
        "# or, in Python:\n"
        "from conformance.backend import load_backend\n"
        "from conformance.runner import golden_case\n"
        f"case = golden_case({case.id}"
        + ("" if target.golden_dir is None else f", {target.golden_dir!r}")
        + ")\n"
        f"print(load_backend({target.spec!r}).{case.op}(**case.inputs))\n"
        "print(case.expected)"
    )


def property_snippet(
    target: Target,
    prop: Property,
    profile: str,
    seed: int,
    max_examples: int,
    calls: list[tuple[str, dict[str, Any]]],
) -> str:
    head = target.command(
        profile, f"--property {prop.name} --seed {seed} --max-examples {max_examples}"
    )
    if not calls:
        return head
    if target.spec is None:
        reference = ReferenceBackend()
        wire_calls = []
        for op, kwargs in calls:
            try:
                expected = golden.encode(getattr(reference, op)(**copy.deepcopy(kwargs)))
            except Exception:  # noqa: BLE001 - the reference refuses: no answer shown
                expected = None
            wire_calls.append((op, golden.encode(kwargs), expected))
        return head + "\n" + _wire_snippet(wire_calls)
    return (
        head
        + "\n# or call the backend with the falsifying example:\n"
        + _call_snippet(target.spec, calls)
    )


# --------------------------------------------------------------------------- golden cases
def run_case(case: golden.Case, target: Target, profile: Any) -> Result:
    res = Result(
        family=case.family,
        kind="golden",
        id=str(case.id),
        op=case.op,
        status=PASSED,
        flags=list(case.flags),
        comment=case.comment,
    )
    backend = target.backend
    if not provides(backend, case.op):
        res.status = NOT_PROVIDED
        return res
    start = time.perf_counter()
    try:
        if target.process is not None:  # the inputs go as written in the golden file
            actual = target.process.call(case.op, case.raw["inputs"], encoded=True)
            changed: list[str] = []  # the worker compares the arguments itself
        else:
            inputs = copy.deepcopy(case.inputs)
            actual = getattr(backend, case.op)(**inputs)
            changed = changed_arguments(snapshot(case.inputs), inputs)
    except NotProvided:
        res.status = NOT_PROVIDED
        return res
    except (BackendError, ProcessFailure) as exc:
        res.status, res.detail = FAILED, str(exc)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - anything the backend raises fails
        res.status = FAILED
        res.detail = f"{case.op} raised {type(exc).__name__}: {exc}\n" + _short_traceback(exc)
    else:
        output = OPERATIONS[case.op].output
        diff = _compare(
            case.expected[output],
            actual,
            profile.honour(case.tolerance[output]),
            output,
            case.inputs,
            _case_tie_check(case, profile),
        )
        if changed:
            diff = (diff + "\n" if diff else "") + f"{case.op} modified its arguments {changed}"
        if diff:
            res.status, res.detail = FAILED, diff
    res.seconds = time.perf_counter() - start
    if res.status == FAILED:
        res.reproduce = golden_snippet(target, case, profile.name)
    return res


def _compare(
    expected: Any,
    actual: Any,
    tol: dict[str, Any],
    where: str,
    inputs: dict[str, Any],
    tie_check: Any,
) -> str | None:
    """``compare``, with an answer it cannot even read (a wrong type) reported as a difference."""
    try:
        return compare(expected, actual, tol, where=where, inputs=inputs, tie_check=tie_check)
    except Exception as exc:  # noqa: BLE001 - a value of the wrong type fails this check only
        return (
            f"{where}: an answer of type {type(actual).__name__} cannot be compared with "
            f"the expected value ({type(exc).__name__}: {exc})"
        )


def _short_traceback(exc: BaseException, frames: int = 3) -> str:
    tb = traceback.extract_tb(exc.__traceback__)[-frames:]
    return "".join(traceback.format_list(tb))


def _applies(case: golden.Case, profile: Any) -> bool:
    """Profile cases run only under the profile they were computed for."""
    if case.family != "profiles":
        return True
    return f"profile:{profile.name}" in case.flags


# --------------------------------------------------------------------------- properties
def run_property(
    prop: Property,
    family: Family,
    target: Target,
    reference: Any,
    profile: Any,
    max_examples: int,
    seed: int,
    shrink: bool = True,
) -> Result:
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis import seed as hseed

    res = Result(
        family=family.name,
        kind="property",
        id=prop.name,
        op=",".join(prop.ops),
        status=PASSED,
        comment=prop.summary,
    )
    backend = target.backend
    if not all(provides(backend, op) for op in prop.ops):
        res.status = NOT_PROVIDED
        return res
    checker = Checker(
        family,
        _Guarded(backend, target.process is None),
        reference,
        tie_check_for(profile),
        profile,
    )
    counts = {"run": 0, "not_provided": 0}

    def body(example: Any) -> None:
        checker.begin()
        try:
            prop.check(checker, example)
        except NotProvided:
            counts["not_provided"] += 1
            return
        counts["run"] += 1

    test = given(prop.strategy)(body)
    test = settings(
        max_examples=max_examples,
        database=None,
        deadline=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
        print_blob=False,
        report_multiple_bugs=False,
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target]
        + ([Phase.shrink] if shrink else []),
    )(test)
    test = hseed(seed)(test)
    start = time.perf_counter()
    try:
        test()
    except ProcessFailure as exc:  # no shrinking through a process that is gone
        res.status, res.detail = FAILED, str(exc)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - a failing property, or the backend raising
        res.status = FAILED
        notes = "\n".join(getattr(exc, "__notes__", []))
        plain = isinstance(exc, (AssertionError, BackendError))
        kind = "" if plain else f"{type(exc).__name__}: "
        res.detail = f"{kind}{exc}" + (f"\n{notes}" if notes else "")
        if not plain:
            res.detail += "\n" + _short_traceback(exc)
    else:
        if counts["run"] == 0:
            res.status = NOT_PROVIDED
    if res.status == FAILED:
        res.reproduce = property_snippet(
            target, prop, profile.name, seed, max_examples, checker.calls
        )
    res.seconds = time.perf_counter() - start
    return res


class _Guarded:
    """The backend as a property sees it: an in-process call that modifies an argument fails.

    (A worker process compares the arguments itself and answers with an error.)
    """

    def __init__(self, backend: Any, check_arguments: bool):
        self._backend, self._check = backend, check_arguments

    def __getattr__(self, op: str) -> Any:
        method = getattr(self._backend, op)
        if not self._check:
            return method

        def call(**kwargs: Any) -> Any:
            before = snapshot(kwargs)
            out = method(**kwargs)
            changed = changed_arguments(before, kwargs)
            if changed:
                raise AssertionError(f"{op} modified its arguments {changed}")
            return out

        return call


# --------------------------------------------------------------------------- the run
def run(
    backend: Any = None,
    *,
    backend_spec: str | None = None,
    backend_cmd: str | Sequence[str] | None = None,
    in_process: bool | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    start_timeout: float = START_TIMEOUT,
    profile: str | None = None,
    families: Iterable[str] | None = None,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    seed: int = 0,
    xfails: Iterable[str] = (),
    golden_cases: bool = True,
    properties: bool = True,
    case_ids: Iterable[int] | None = None,
    property_names: Iterable[str] | None = None,
    golden_dir: Path | str = golden.GOLDEN_DIR,
    progress: Callable[[Result], Any] | None = None,
    shrink: bool = True,
    jobs: int = 1,
) -> Report:
    """Run the selected checks on a backend.

    ``backend``: a "module:object" string (run in a worker process, or directly
    with ``in_process=True``), or a Python object (called directly); default the
    reference. ``backend_cmd``: instead, the command of a process speaking the
    wire protocol. ``timeout``: seconds one call to a process may take;
    ``start_timeout``: seconds it may take to start and send its hello.
    ``profile``: the convention profile (default: the one the backend claims,
    else "reference"). ``shrink=False`` reports the first failing example
    Hypothesis finds instead of the smallest (faster; the reproduction command
    then reruns the same search). ``jobs``: processes that run the properties
    (more than one: a pool of processes started with the run), each with its own
    copy of the backend (``default_jobs``
    is what the command line uses; more than one needs a backend named by a
    string or a command, and a calling script guarded by
    ``if __name__ == "__main__"``, as for any spawned process). Raises
    ``ValueError`` on a usage error: an
    unknown family, id or property, a refused golden directory, a backend that
    cannot be loaded or started.
    """
    t0 = time.perf_counter()
    opening = dict(
        backend=backend,
        backend_spec=backend_spec,
        backend_cmd=backend_cmd,
        in_process=in_process,
        profile=profile,
        timeout=timeout,
        start_timeout=start_timeout,
    )
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    if jobs > 1 and not _reopenable(backend, backend_cmd):
        raise ValueError(
            "jobs > 1 needs a backend every process can open: a 'module:object' string "
            "or a backend command, not a Python object"
        )
    target = open_backend(**opening, wait=False)
    pool = None
    try:  # the checks below overlap with the process's start
        all_families = load_families()
        names = list(all_families) if families is None else list(families)
        unknown = [f for f in names if f not in all_families]
        if unknown:
            raise ValueError(f"unknown families {unknown}; expected some of {list(all_families)}")
        if isinstance(max_examples, bool) or not isinstance(max_examples, int) or max_examples < 1:
            raise ValueError(f"max_examples must be an integer >= 1, got {max_examples!r}")
        files = check_golden_dir(golden_dir, all_families)
        xfails = set(xfails)
        case_ids = None if case_ids is None else {int(i) for i in case_ids}
        property_names = None if property_names is None else set(property_names)
        known = _all_ids(files, all_families)
        missing = sorted(str(i) for i in (case_ids or ()) if str(i) not in known) + sorted(
            p for p in (property_names or ()) if p not in known
        )
        if missing:
            raise ValueError(f"no golden case or property is called {', '.join(missing)}")
        if case_ids is not None and property_names is None:
            properties = False
        if property_names is not None and case_ids is None:
            golden_cases = False
        if target.process is not None:
            target.process.handshake()
        if Path(golden_dir).resolve() != golden.GOLDEN_DIR.resolve():
            target.golden_dir = str(golden_dir)
        prof = _profile(claimed_profile(target, profile))
        report = Report(
            backend=backend_name(target.backend),
            backend_spec=target.label,
            profile=prof.name,
            seed=seed,
            max_examples=max_examples,
            operations=[op for op in OPERATIONS if provides(target.backend, op)],
            isolation="in-process" if target.process is None else "process",
        )
        selected = [
            (name, prop)
            for name in names
            for prop in all_families[name].properties
            if properties and (property_names is None or prop.name in property_names)
        ]
        if jobs > 1 and len(selected) >= POOL_MIN_PROPERTIES:  # starts while the golden cases run
            pool = _property_pool(jobs, opening, prof.name)
        t1 = time.perf_counter()
        if golden_cases:
            for name in names:
                for case in files[name].cases:
                    if (case_ids is not None and case.id not in case_ids) or not _applies(
                        case, prof
                    ):
                        continue
                    _record(report, run_case(case, target, prof), xfails, progress)
        t2 = time.perf_counter()
        reference = ReferenceBackend()
        restarts: dict[int, int] = {}
        futures = (
            [pool.submit(_pooled_property, p.name, max_examples, seed, shrink) for _, p in selected]
            if pool is not None
            else []
        )
        for i, (name, prop) in enumerate(selected):  # in the order of families and properties
            res = None
            if futures:
                try:
                    res, pid, restarts[pid] = futures[i].result()
                except cf.BrokenExecutor:  # the pool could not start or run it: run it here
                    pass
            if res is None:
                res = run_property(
                    prop, all_families[name], target, reference, prof, max_examples, seed, shrink
                )
            _record(report, res, xfails, progress)
        t3 = time.perf_counter()
        report.restarts = (target.process.restarts if target.process else 0) + sum(
            restarts.values()
        )
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        target.close()
    report.unmatched_xfails = sorted(x for x in xfails if x not in known)
    report.seconds = {
        "start": round(t1 - t0, 3),
        "golden": round(t2 - t1, 3),
        "properties": round(t3 - t2, 3),
        "total": round(t3 - t0, 3),
    }
    return report


def default_jobs(backend: Any, backend_cmd: Any, in_process: bool | None) -> int:
    """Processes for the properties by default: two where the backend runs in a process
    of its own and this machine has two cores or more (each property is seeded on its own,
    so the results do not depend on which process runs it); otherwise one."""
    if in_process or not _reopenable(backend, backend_cmd):
        return 1
    return max(1, min(2, os.cpu_count() or 1))


def _reopenable(backend: Any, backend_cmd: Any) -> bool:
    return backend_cmd is not None or backend is None or isinstance(backend, str)


#: Fewer properties than this run in this process: starting a process costs about a second.
POOL_MIN_PROPERTIES = 6

#: In a process of the property pool: (target, reference, profile, families).
_POOLED: dict[str, Any] = {}


def _property_pool(workers: int, opening: dict[str, Any], profile: str) -> cf.ProcessPoolExecutor:
    """Processes that each open their own copy of the backend and run properties on it, all
    started now (a process starts for a submitted task: one empty task each)."""
    pool = cf.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_open_pooled,
        initargs=(opening, profile),
    )
    for _ in range(workers):
        pool.submit(os.getpid)
    return pool


def _open_pooled(opening: dict[str, Any], profile: str) -> None:
    import atexit

    target = open_backend(**opening)
    atexit.register(target.close)
    _POOLED.update(
        target=target,
        reference=ReferenceBackend(),
        profile=_profile(profile),
        families=load_families(),
    )


def _pooled_property(
    name: str, max_examples: int, seed: int, shrink: bool
) -> tuple[Result, int, int]:
    """Run the property ``name`` in a pool process: (result, pid, restarts so far)."""
    target = _POOLED["target"]
    family = next(
        f for f in _POOLED["families"].values() if any(p.name == name for p in f.properties)
    )
    prop = next(p for p in family.properties if p.name == name)
    res = run_property(
        prop, family, target, _POOLED["reference"], _POOLED["profile"], max_examples, seed, shrink
    )
    return res, os.getpid(), target.process.restarts if target.process else 0


def _record(
    report: Report, res: Result, xfails: set[str], progress: Callable[[Result], Any] | None
) -> None:
    _apply_xfail(res, xfails)
    report.results.append(res)
    if progress:
        progress(res)


def _all_ids(files: dict[str, golden.GoldenFile], families: dict[str, Family]) -> set[str]:
    """Every id that could match an xfails entry (golden ids of every family, property names)."""
    ids = {p.name for f in families.values() for p in f.properties}
    for f in files.values():
        ids |= {str(c.id) for c in f.cases}
    return ids


def _apply_xfail(res: Result, xfails: set[str]) -> None:
    if res.id not in xfails:
        return
    if res.status == FAILED:
        res.status = XFAIL
    elif res.status == PASSED:
        res.status = XPASS


# --------------------------------------------------------------------------- printing
def nothing_checked_message(report: Report) -> str:
    if not report.results:
        why = f"no check was selected (none applies under the profile {report.profile})"
    elif not report.operations:
        why = "the backend provides no operation of the protocol"
    else:
        why = (
            "the backend provides none of the operations the selected checks need "
            f"(it provides {', '.join(report.operations)})"
        )
    return f"nothing was checked: {why}"


def format_report(report: Report, *, verbose_failures: bool = True) -> str:
    lines = [
        f"conformance of {report.backend} ({report.backend_spec}), profile {report.profile}, "
        f"Hypothesis seed {report.seed}, {report.max_examples} examples per property",
        "",
    ]
    head = (
        f"{'family':<16} {'kind':<9} {'passed':>7} {'failed':>7} {'exp-fail':>8} "
        f"{'xpass':>6} {'not provided':>13}"
    )
    lines += [head, "-" * len(head)]
    totals = {s: 0 for s in STATUSES}
    for family, kinds in report.summary().items():
        for kind, row in kinds.items():
            lines.append(
                f"{family:<16} {kind:<9} {row[PASSED]:>7} {row[FAILED]:>7} "
                f"{row[XFAIL]:>8} {row[XPASS]:>6} {row[NOT_PROVIDED]:>13}"
            )
            for s in STATUSES:
                totals[s] += row[s]
    lines.append("-" * len(head))
    lines.append(
        f"{'total':<16} {'':<9} {totals[PASSED]:>7} {totals[FAILED]:>7} "
        f"{totals[XFAIL]:>8} {totals[XPASS]:>6} {totals[NOT_PROVIDED]:>13}"
    )
    if verbose_failures and report.failures:
        lines += ["", f"{len(report.failures)} unexpected failure(s):"]
        for r in report.failures:
            title = f"case {r.id}" if r.kind == "golden" else f"property {r.id}"
            flags = f" [{', '.join(r.flags)}]" if r.flags else ""
            lines += ["", f"FAILED {r.family} {title}: {r.op}{flags}", f"  {r.comment}"]
            lines += ["  " + line for line in r.detail.rstrip().splitlines()]
            lines += ["  reproduce:"] + [
                "    " + _clip_line(line) for line in r.reproduce.splitlines()
            ]
    xpass = [r.id for r in report.results if r.status == XPASS]
    if xpass:
        lines += ["", f"listed as expected failures but passed: {', '.join(xpass)}"]
    if report.unmatched_xfails:
        lines += ["", f"xfails entries that match no check: {', '.join(report.unmatched_xfails)}"]
    if report.restarts:
        lines += [
            "",
            f"the backend process was restarted {report.restarts} time(s) "
            "after a crash, a timeout or a protocol error",
        ]
    secs = report.seconds
    lines += [
        "",
        f"time: golden {secs.get('golden', 0):.2f} s, properties "
        f"{secs.get('properties', 0):.2f} s, total {secs.get('total', 0):.2f} s "
        f"(start {secs.get('start', 0):.2f} s)",
    ]
    if report.checked == 0:
        lines.append(f"result: FAILED ({nothing_checked_message(report)})")
    else:
        lines.append(
            "result: " + ("OK" if report.ok else f"FAILED ({len(report.failures)} unexpected)")
        )
    return "\n".join(lines)


def _clip_line(line: str, limit: int = SNIPPET_LIMIT) -> str:
    """A reproduction line as printed; the JSON report (``--report``) keeps it whole."""
    if len(line) <= limit:
        return line
    return line[:limit] + f"... ({len(line) - limit} more characters: the --report file has them)"


def write_report(report: Report, path: str | Path) -> None:
    Path(path).write_text(
        json.dumps(report.to_json(), indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )


def default_max_examples() -> int:
    return int(os.environ.get("CONFORMANCE_MAX_EXAMPLES", DEFAULT_MAX_EXAMPLES))
