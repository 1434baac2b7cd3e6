"""The wire protocol: backends in a process, isolated whatever they do; messages, their schema."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conformance import __main__ as cli
from conformance import golden
from conformance.backend import OPERATIONS, ReferenceBackend
from conformance.runner import FAILED, PASSED, format_report, run
from conformance.wire import (
    HandshakeError,
    ProcessBackend,
    ProcessFailure,
    answer,
    changed_arguments,
    child_environment,
    dumps,
    message_problem,
    serve_command,
    snapshot,
)

HERE = Path(__file__).resolve().parent
FAKE = f"{sys.executable} {HERE / 'wire_fake_backend.py'}"
SCHEMA = json.loads((HERE.parent / "conformance" / "wire_schema.json").read_text())


def _ids(op, count):
    return [c.id for p in golden.family_files() for c in golden.load(p).cases if c.op == op][:count]


KTK = _ids("keep_top_k", 2)
SCHEDULE = _ids("schedule", 2)
# Run in this order (masks before schedules): the misbehaving backends below break keep_top_k
# only, so the two schedule cases pass only if the process was restarted after the first.
CASES = [KTK[0], SCHEDULE[0], SCHEDULE[1]]


# --------------------------------------------------------------------------- served Python backends
class ExitsInOperation(ReferenceBackend):
    def keep_top_k(self, *, scores, k):
        sys.exit(0)


class InterruptsInOperation(ReferenceBackend):
    def keep_top_k(self, *, scores, k):
        raise KeyboardInterrupt


class KillsItself(ReferenceBackend):
    def keep_top_k(self, *, scores, k):
        print("about to leave", file=sys.stderr, flush=True)
        os._exit(7)


class Hangs(ReferenceBackend):
    def keep_top_k(self, *, scores, k):
        time.sleep(600)


class WrongType(ReferenceBackend):
    def keep_top_k(self, *, scores, k):
        return "the top k"


class Unencodable(ReferenceBackend):
    def keep_top_k(self, *, scores, k):
        return {1, 2}


class Chatty(ReferenceBackend):
    """Prints on stdout inside an operation: the worker keeps stdout for the protocol."""

    def keep_top_k(self, *, scores, k):
        print("hello from keep_top_k")
        return super().keep_top_k(scores=scores, k=k)


class MutatesScores(ReferenceBackend):
    def keep_top_k(self, *, scores, k):
        out = super().keep_top_k(scores=scores, k=k)
        scores[...] = 0.0
        return out


class Empty:
    pass


def _spec(cls):
    return f"tests.test_conformance_wire:{cls.__name__}"


def _by_id(report):
    return {r.id: r for r in report.results}


def _in_order(report):
    assert [r.id for r in report.results] == [str(i) for i in CASES]
    return report.results


@pytest.mark.parametrize(
    "cls, message",
    [
        (ExitsInOperation, "SystemExit"),
        (InterruptsInOperation, "KeyboardInterrupt"),
        (KillsItself, "ended while answering"),
        (WrongType, "shape ()"),
        (Unencodable, "cannot carry"),
    ],
)
def test_a_misbehaving_operation_fails_its_check_and_the_run_goes_on(cls, message):
    report = run(_spec(cls), case_ids=CASES)
    first, middle, last = _in_order(report)
    assert first.status == FAILED and message in first.detail, first.detail
    assert middle.status == PASSED and last.status == PASSED
    assert report.isolation == "process"
    assert f"--backend {_spec(cls)} --case {KTK[0]}" in first.reproduce


def test_os_exit_restarts_the_worker_and_shows_its_stderr():
    report = run(_spec(KillsItself), case_ids=CASES)
    first = _by_id(report)[str(CASES[0])]
    assert "exited with status 7" in first.detail and "about to leave" in first.detail
    assert report.restarts == 1  # for the middle case; none is needed after the last
    assert "restarted 1 time(s)" in format_report(report)


def test_a_hanging_operation_times_out():
    start = time.monotonic()
    report = run(_spec(Hangs), case_ids=CASES, timeout=3)
    assert time.monotonic() - start < 20
    first, middle, _ = _in_order(report)
    assert first.status == FAILED and "no answer to request" in first.detail
    assert "within 3 s (--timeout)" in first.detail
    assert middle.status == PASSED


def test_a_hanging_operation_fails_a_property_without_shrinking():
    start = time.monotonic()
    report = run(_spec(Hangs), property_names=["masks/keep-top-k-count"], timeout=3)
    assert time.monotonic() - start < 20
    [res] = report.results
    assert res.status == FAILED and "no answer to request" in res.detail
    assert "backend.keep_top_k(" in res.reproduce


def test_printing_on_stdout_does_not_break_the_protocol():
    report = run(_spec(Chatty), case_ids=KTK)
    assert report.ok, format_report(report)


def test_mutation_is_caught_by_golden_cases_and_by_properties_alone():
    golden_only = run(_spec(MutatesScores), case_ids=KTK[:1])
    assert "keep_top_k modified its arguments ['scores']" in golden_only.failures[0].detail
    names = ["masks/keep-top-k-differential", "masks/keep-top-k-count"]
    props = run(_spec(MutatesScores), property_names=names, max_examples=5)
    assert sorted(r.id for r in props.failures) == sorted(names)
    assert all("modified its arguments ['scores']" in r.detail for r in props.failures)
    code = cli.main(
        [
            "run",
            "--backend",
            _spec(MutatesScores),
            "--properties-only",
            "--family",
            "masks",
            "--max-examples",
            "5",
            "--no-shrink",
        ]
    )
    assert code == 1


def test_mutation_is_caught_in_process_too():
    props = run(MutatesScores(), property_names=["masks/keep-top-k-count"], max_examples=5)
    assert props.failures and "modified its arguments ['scores']" in props.failures[0].detail


@pytest.mark.parametrize("spec", ["os:path", "builtins:int", "tests.test_conformance_wire:Empty"])
def test_a_backend_that_provides_nothing_checks_nothing_and_fails(spec, capsys):
    assert cli.main(["run", "--backend", spec, "--family", "schedules"]) == 1
    out = capsys.readouterr().out
    assert "nothing was checked: the backend provides no operation" in out


def test_a_run_whose_checks_all_need_missing_operations_checks_nothing():
    class OnlyCounts:
        def fraction_to_count(self, *, fraction, n, rounding):
            return ReferenceBackend().fraction_to_count(fraction=fraction, n=n, rounding=rounding)

    report = run(OnlyCounts(), families=["curvature"], max_examples=2)
    assert not report.ok and report.checked == 0
    assert "nothing was checked: the backend provides none of the operations" in format_report(
        report
    )


# --------------------------------------------------------------------------- processes by command
def _cmd_run(mode, **kwargs):
    return run(backend_cmd=f"{FAKE} {mode}", **kwargs)


def test_a_well_behaved_process_passes_and_shows_request_lines():
    report = _cmd_run("ok", case_ids=CASES)
    assert report.ok and report.backend == "fake (ok)" and report.checked == 3
    bad = _cmd_run("wrong-id", case_ids=KTK[:1])
    snippet = bad.failures[0].reproduce
    assert snippet.startswith("python -m conformance run --backend-cmd ")
    call = next(line for line in snippet.splitlines() if line.startswith('{"type":"call"'))
    message = json.loads(call)
    assert message["op"] == "keep_top_k" and message_problem(message) is None
    case = next(c for p in golden.family_files() for c in golden.load(p).cases if c.id == KTK[0])
    assert message["args"] == case.raw["inputs"]
    expected = next(line for line in snippet.splitlines() if line.startswith('# {"type":"result"'))
    assert json.loads(expected[2:])["value"] == case.raw["expected"]["mask"]


@pytest.mark.parametrize(
    "mode, message",
    [
        ("crash", "the backend process ended while answering request"),
        ("garbage", "protocol error while waiting for the answer to request"),
        ("wrong-id", "while request"),
        ("bad-value", "not in the golden files' encoding"),
    ],
)
def test_a_misbehaving_process_fails_the_check_and_the_run_goes_on(mode, message):
    report = _cmd_run(mode, case_ids=CASES, timeout=10)
    first, middle, last = _in_order(report)
    assert first.status == FAILED and message in first.detail, first.detail
    assert middle.status == PASSED and last.status == PASSED


def test_a_crashing_process_is_reported_with_its_stderr():
    report = _cmd_run("crash", case_ids=CASES[:1])
    detail = report.failures[0].detail
    assert "exited with status 3" in detail and "fake backend: request" in detail
    assert "(keep_top_k)" in detail


def test_garbage_on_stdout_is_named_a_protocol_error():
    detail = _cmd_run("garbage", case_ids=CASES[:1]).failures[0].detail
    assert "the line is not JSON" in detail and "computing the mask..." in detail
    assert "stdout carries only protocol lines" in detail


def test_an_extra_line_fails_the_next_check_with_a_clear_message():
    report = _cmd_run("extra", case_ids=CASES)
    first, middle, last = _in_order(report)
    assert first.status == PASSED
    assert middle.status == FAILED
    assert "after its last answer" in middle.detail or "already answered" in middle.detail
    assert last.status == PASSED


def test_a_hanging_process_times_out_and_is_replaced():
    report = _cmd_run("hang", case_ids=CASES, timeout=3)
    first, middle, _ = _in_order(report)
    assert first.status == FAILED and "within 3 s" in first.detail
    assert middle.status == PASSED and report.restarts == 1


@pytest.mark.parametrize(
    "mode, message",
    [
        ("no-hello", "exited before its hello line"),
        ("version-2", "speaks protocol version 2; this runner speaks 1"),
        ("unknown-op", "unknown operations ['prune_everything']"),
    ],
)
def test_a_failed_handshake_is_a_usage_error(mode, message, capsys):
    assert cli.main(["run", "--backend-cmd", f"{FAKE} {mode}", "--golden-only"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: the backend process")
    if mode == "no-hello":
        assert "cannot initialise the device" in err and "exited with status 1" in err


def test_a_silent_or_missing_process_is_a_usage_error(capsys):
    with pytest.raises(HandshakeError, match="sent no hello line within 1 s"):
        run(backend_cmd=f"{FAKE} slow-hello", start_timeout=1)
    assert cli.main(["run", "--backend-cmd", "/nonexistent/backend --serve"]) == 2
    assert "cannot start the backend process" in capsys.readouterr().err
    assert cli.main(["run", "--backend", "no_such_module_x:B"]) == 2
    err = capsys.readouterr().err
    assert "No module named 'no_such_module_x'" in err


def test_the_claimed_profile_is_used_and_a_contradiction_refused(capsys):
    report = _cmd_run("torch", families=["profiles"], golden_cases=True, properties=False)
    assert report.profile == "torch"
    assert cli.main(["run", "--backend-cmd", f"{FAKE} torch", "--profile", "reference"]) == 2
    assert "claims the profile 'torch'" in capsys.readouterr().err


def test_a_process_that_provides_nothing_checks_nothing(capsys):
    assert cli.main(["run", "--backend-cmd", f"{FAKE} nothing", "--family", "masks"]) == 1
    assert "nothing was checked" in capsys.readouterr().out


def test_properties_run_through_a_process_with_the_same_results():
    kwargs = dict(families=["masks"], max_examples=5, seed=2)
    through = run(backend_cmd=f"{FAKE} ok", **kwargs)
    direct = run(ReferenceBackend(), **kwargs)
    assert through.ok and direct.ok
    assert [(r.id, r.status) for r in through.results] == [(r.id, r.status) for r in direct.results]


# --------------------------------------------------------------------------- the client and server
def test_process_backend_calls_and_errors():
    with ProcessBackend(
        serve_command("conformance.backend:ReferenceBackend"), env=child_environment()
    ) as proc:
        hello = proc.start()
        assert hello["operations"] == list(OPERATIONS) and proc.name == "refprune reference"
        mask = proc.keep_top_k(scores=np.array([0.5, -0.0, 2.0]), k=2)
        assert mask.dtype == bool and mask.tolist() == [True, False, True]
        assert proc.fraction_to_count(fraction=0.25, n=10, rounding="ceil") == 3
        with pytest.raises(Exception, match="fraction"):
            proc.fraction_to_count(fraction=2.5, n=10, rounding="ceil")
        with pytest.raises(AttributeError):
            proc.no_such_operation


def test_a_restarted_process_must_send_the_same_hello(tmp_path):
    script = tmp_path / "changes.py"
    script.write_text(
        "import json, os, sys\n"
        "flag = sys.argv[1]\n"
        "ops = ['keep_top_k'] if os.path.exists(flag) else ['keep_top_k', 'n_m_mask']\n"
        "open(flag, 'w').close()\n"
        "print(json.dumps({'type': 'hello', 'protocol': 'refprune-conformance', 'version': 1,\n"
        "                  'backend': 'x', 'operations': ops, 'profile': 'reference'}),\n"
        "      flush=True)\n"
        "sys.stdin.readline()\n"
    )
    proc = ProcessBackend([sys.executable, str(script), str(tmp_path / "flag")], timeout=10)
    proc.start()
    with pytest.raises(ProcessFailure, match="ended while answering"):
        proc.call("keep_top_k", {"scores": np.zeros(2), "k": 1})
    with pytest.raises(ProcessFailure, match="same operations and profile"):
        proc.call("keep_top_k", {"scores": np.zeros(2), "k": 1})
    proc.close()


def test_handshake_errors_are_value_errors():
    with pytest.raises(HandshakeError, match="cannot start"):
        ProcessBackend(["/nonexistent/x"]).start()
    assert issubclass(HandshakeError, ValueError)


def test_serve_answers_every_kind_of_call():
    ops = list(OPERATIONS)
    backend = MutatesScores()

    def ask(message):
        reply = answer(backend, ops, dumps(message).encode())
        assert message_problem(reply) is None, reply
        return reply

    call = {
        "type": "call",
        "id": 4,
        "op": "keep_top_k",
        "args": golden.encode({"scores": np.array([1.0, 2.0]), "k": 1}),
    }
    assert ask(call) == {
        "type": "error",
        "id": 4,
        "error": "ArgumentsModified",
        "message": "keep_top_k modified its arguments ['scores']",
    }
    call.update(
        op="fraction_to_count",
        args={"fraction": {"float64": "0x1p-1"}, "n": 3, "rounding": "floor"},
    )
    assert ask(call) == {"type": "result", "id": 4, "value": 1}
    call["args"]["n"] = -1
    reply = ask(call)
    assert reply["type"] == "error" and reply["error"] == "ValueError" and "n" in reply["message"]
    assert answer(backend, ["keep_top_k"], dumps(call).encode())["type"] == "not_provided"
    bad = answer(backend, ops, b"not json\n")
    assert bad["type"] == "error" and bad["id"] is None and bad["error"] == "ProtocolError"
    bad = answer(backend, ops, dumps(dict(call, args={"w": {"ndarray": "float32"}})).encode())
    assert bad["error"] == "ProtocolError" and "cannot decode the arguments" in bad["message"]


def test_changed_arguments_is_bit_for_bit():
    def changed(before, after):
        return changed_arguments(snapshot(before), after)

    before = {
        "a": np.array([0.0, 1.0]),
        "b": {"c": np.array([True])},
        "d": [np.arange(3)],
        "e": float("nan"),
        "f": ["x"],
    }
    same = {
        "a": np.array([0.0, 1.0]),
        "b": {"c": np.array([True])},
        "d": [np.arange(3)],
        "e": float("nan"),
        "f": ["x"],
    }
    assert changed(before, same) == []
    assert changed(before, dict(same, a=np.array([-0.0, 1.0]))) == ["a"]
    assert changed(before, dict(same, a=np.array([0.0, 1.0], dtype=np.float32))) == ["a"]
    assert changed(before, dict(same, b={"c": np.array([False])})) == ["b"]
    assert changed(before, dict(same, d=[])) == ["d"]
    assert changed(before, dict(same, f=["x", "y"])) == ["f"]
    strided = np.arange(12.0).reshape(3, 4)[:, ::2]
    assert changed({"x": strided}, {"x": strided.copy()}) == []


def test_serve_from_the_command_line():
    proc = subprocess.run(
        serve_command("conformance.backend:ReferenceBackend"),
        input=dumps(
            {
                "type": "call",
                "id": 1,
                "op": "fraction_to_count",
                "args": {"fraction": {"float64": "0x1p-2"}, "n": 10, "rounding": "ceil"},
            }
        )
        + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=child_environment(),
    )
    assert proc.returncode == 0, proc.stderr
    hello, reply = [json.loads(line) for line in proc.stdout.splitlines()]
    assert hello["type"] == "hello" and hello["version"] == 1 and hello["profile"] == "reference"
    assert reply == {"type": "result", "id": 1, "value": 3}
    bad = subprocess.run(
        serve_command("no_such_module_x:B"), input="", capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and bad.stdout == "" and "no_such_module_x" in bad.stderr


# --------------------------------------------------------------------------- the JSON Schema
def _validator():
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    return jsonschema.Draft202012Validator(SCHEMA)


def test_every_message_of_a_run_follows_the_schema():
    validator = _validator()
    backend = ReferenceBackend()
    ops = list(OPERATIONS)
    hello = {
        "type": "hello",
        "protocol": "refprune-conformance",
        "version": 1,
        "backend": "refprune reference",
        "operations": ops,
        "profile": "reference",
    }
    validator.validate(hello)
    for path in golden.family_files():
        for i, case in enumerate(golden.load(path).cases[:12], start=1):
            call = {"type": "call", "id": i, "op": case.op, "args": case.raw["inputs"]}
            validator.validate(call)
            reply = answer(backend, ops, dumps(call).encode())
            validator.validate(reply)
            assert reply["type"] == "result", reply
    validator.validate({"type": "not_provided", "id": 3})
    validator.validate({"type": "error", "id": None, "error": "ProtocolError", "message": "x"})


@pytest.mark.parametrize(
    "message",
    [
        {"type": "call", "id": 0, "op": "keep_top_k", "args": {}},
        {"type": "call", "id": 1, "op": "keep_top_k"},
        {"type": "call", "id": 1, "op": "keep_top_k", "args": {}, "extra": 1},
        {"type": "result", "id": 1},
        {"type": "result", "id": True, "value": 1},
        {
            "type": "hello",
            "protocol": "refprune-conformance",
            "version": 1,
            "backend": "x",
            "operations": "keep_top_k",
            "profile": "reference",
        },
        {"type": "error", "id": 1, "message": "x"},
        {"type": "bye"},
        [1, 2],
    ],
)
def test_the_schema_and_the_runner_refuse_the_same_messages(message):
    validator = _validator()
    assert not validator.is_valid(message)
    assert message_problem(message) is not None


@pytest.mark.parametrize(
    "value",
    [
        {"float64": "0x1p-1"},
        {"ndarray": "bool", "shape": [2, 1], "data": "10"},
        {"ndarray": "float64", "shape": [], "data": ["-0x0p+0"]},
        {"ndarray": "int64", "shape": [2], "data": [1, -2]},
        {"a": [1, "x", None, True]},
    ],
)
def test_values_follow_the_schema(value):
    validator = _validator()
    validator.validate({"type": "result", "id": 1, "value": value})


@pytest.mark.parametrize(
    "value",
    [
        0.5,
        {"float64": 0.5},
        {"ndarray": "float32", "shape": [1], "data": ["0x1p+0"]},
        {"ndarray": "bool", "shape": [1], "data": "x"},
        {"ndarray": "int64", "shape": [1], "data": [0.5]},
        {"float64": "0x1p+0", "x": 1},
    ],
)
def test_malformed_values_are_refused_by_the_schema(value):
    validator = _validator()
    assert not validator.is_valid({"type": "result", "id": 1, "value": value})


def test_values_are_defined_as_in_the_golden_files_schema():
    """One definition of the value encoding: the wire schema's equals the golden files' schema's.

    (Only the hex-float pattern differs: an answer may hold inf or nan, and trailing zeros.)
    """
    path = HERE.parent / "conformance" / "golden" / "schema.json"
    if not path.exists():
        pytest.skip("no golden/schema.json")
    theirs = json.loads(path.read_text())["$defs"]

    def plain(node):
        if isinstance(node, dict):
            return {k: plain(v) for k, v in node.items() if k != "description"}
        if isinstance(node, list):
            return [plain(v) for v in node]
        return node

    for name in ("value", "float64", "ndarray", "mapping", "shape"):
        assert plain(SCHEMA["$defs"][name]) == plain(theirs[name]), name
