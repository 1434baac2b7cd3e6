"""The JSON-lines wire protocol: a backend in another process, in any language.

The runner starts the backend's process and talks to it on its stdin and stdout,
one JSON object per line (``docs/wire_protocol.md`` is the specification,
``conformance/wire_schema.json`` its JSON Schema):

1. the process writes a ``hello`` line: protocol name and version, backend name,
   the operations it provides, the convention profile it claims;
2. the runner writes one ``call`` line per operation call (operation name and
   keyword arguments, arrays and floats encoded as in the golden files), and
   waits for the one answer line with the same id: ``result``, ``not_provided``
   or ``error``;
3. the runner closes the process's stdin when it is done; the process exits.

Python backends run the same way by default: ``python -m conformance serve
MODULE:CLASS`` (``serve`` below) serves one over stdin and stdout. So a crash,
``os._exit``, ``SystemExit`` or ``KeyboardInterrupt`` in backend code, a hang
(``timeout``), or a line that breaks the protocol fails the one check that made
the call: ``ProcessBackend`` kills the process and starts a new one for the
next call. A process that cannot start or whose hello is wrong is a usage error
(``HandshakeError``).
"""

from __future__ import annotations

import functools
import json
import os
import queue
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from typing import IO, Any, NoReturn, cast

import numpy as np

from . import golden
from .backend import OPERATIONS, NotProvided, backend_name, load_backend, provides

PROTOCOL = "refprune-conformance"
VERSION = 1
DEFAULT_TIMEOUT = 60.0  # seconds one call may take
START_TIMEOUT = 60.0  # seconds a process may take to start and send its hello
STDERR_TAIL = 2000  # characters of the process's stderr shown with a failure
MESSAGE_TYPES = ("hello", "call", "result", "not_provided", "error")


class HandshakeError(ValueError):
    """The backend process could not start, or its hello line is missing or wrong."""


class BackendError(Exception):
    """The backend answered a call with an error, or with a result that cannot be decoded."""


class ProcessFailure(BaseException):
    """The backend process crashed, hung, or broke the protocol while answering a call.

    A ``BaseException``, so that Hypothesis does not retry or shrink a property
    through a process that is gone: the check fails at once, with this message.
    The process has been stopped; the next call starts a new one.
    """


# --------------------------------------------------------------------------- messages
def dumps(message: dict[str, Any]) -> str:
    """One protocol line (without its newline): compact ASCII JSON, keys in the given order."""
    return json.dumps(message, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def hello_message(backend: str, operations: Sequence[str], profile: str) -> dict[str, Any]:
    return {
        "type": "hello",
        "protocol": PROTOCOL,
        "version": VERSION,
        "backend": backend,
        "operations": list(operations),
        "profile": profile,
    }


def call_message(
    call_id: int, op: str, args: dict[str, Any], *, encoded: bool = False
) -> dict[str, Any]:
    """A call; ``args`` are Python values, or already in the golden encoding when ``encoded``."""
    return {
        "type": "call",
        "id": call_id,
        "op": op,
        "args": args if encoded else golden.encode(args),
    }


def result_message(call_id: int, value: Any) -> dict[str, Any]:
    return {"type": "result", "id": call_id, "value": golden.encode(value)}


def error_message(call_id: int | None, error: str, message: str, tb: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": "error", "id": call_id, "error": error, "message": message}
    if tb:
        out["traceback"] = tb
    return out


_KEYS = {
    "hello": ({"type", "protocol", "version", "backend", "operations", "profile"}, set()),
    "call": ({"type", "id", "op", "args"}, set()),
    "result": ({"type", "id", "value"}, set()),
    "not_provided": ({"type", "id"}, {"message"}),
    "error": ({"type", "id", "error", "message"}, {"traceback"}),
}


def message_problem(message: Any) -> str | None:
    """Why ``message`` is not a valid protocol message (None when it is).

    The same rules as ``wire_schema.json``: the keys each type requires, no
    other keys, and their JSON types (values inside ``args`` and ``value`` are
    checked when they are decoded).
    """
    if not isinstance(message, dict):
        return f"a message is a JSON object, got {type(message).__name__}"
    kind = message.get("type")
    if kind not in _KEYS:
        return f"'type' must be one of {list(MESSAGE_TYPES)}, got {kind!r}"
    required, optional = _KEYS[kind]
    missing, extra = required - set(message), set(message) - required - optional
    if missing or extra:
        return (
            f"a {kind} message has the keys {sorted(required)}"
            + (f" (optionally {sorted(optional)})" if optional else "")
            + f"; missing {sorted(missing)}, unexpected {sorted(extra)}"
        )
    if kind == "hello":
        ops = message["operations"]
        if not (
            isinstance(message["protocol"], str)
            and _is_int(message["version"])
            and isinstance(message["backend"], str)
            and isinstance(message["profile"], str)
            and isinstance(ops, list)
            and all(isinstance(o, str) for o in ops)
        ):
            return (
                "hello needs protocol (string), version (integer), backend (string), "
                "operations (list of strings) and profile (string)"
            )
        return None
    call_id = message["id"]
    if kind == "error":
        if not (call_id is None or (_is_int(call_id) and call_id >= 1)):
            return f"'id' must be a positive integer or null, got {call_id!r}"
        if not (
            isinstance(message["error"], str)
            and isinstance(message["message"], str)
            and isinstance(message.get("traceback", ""), str)
        ):
            return "error needs error (string), message (string), optionally traceback (string)"
        return None
    if not (_is_int(call_id) and call_id >= 1):
        return f"'id' must be a positive integer, got {call_id!r}"
    if kind == "call" and not (
        isinstance(message["op"], str) and isinstance(message["args"], dict)
    ):
        return "call needs op (string) and args (object)"
    if kind == "not_provided" and not isinstance(message.get("message", ""), str):
        return "not_provided's message must be a string"
    return None


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def decode_value(obj: Any, where: str) -> Any:
    """A received value decoded, after checking it follows the golden files' value encoding."""
    problems: list[str] = []
    golden._check_value(obj, where, problems)
    if problems:
        raise ValueError("; ".join(problems[:3]))
    try:
        return golden.decode(obj)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None


def changed_arguments(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Names of the arguments whose value differs bit for bit from ``before``.

    ``before`` is ``snapshot(args)`` taken before the call, ``after`` the arguments after it.
    """
    now = snapshot(after)
    return [k for k in before if before[k] != now.get(k)]


def snapshot(value: Any) -> Any:
    """A comparable copy of ``value``: arrays as (dtype, shape, bytes), floats by their bits.

    Two snapshots are equal exactly when the values are equal bit for bit (-0.0 differs
    from 0.0, a NaN equals itself), containers included.
    """
    if isinstance(value, np.ndarray):
        return ("ndarray", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, dict):
        return {k: snapshot(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [snapshot(v) for v in value])
    if isinstance(value, (float, np.floating)):
        return ("float", float(value).hex())
    return value


# --------------------------------------------------------------------------- the client
class ProcessBackend:
    """A backend in a process speaking the wire protocol; its operations are its methods.

    ``ProcessBackend(argv).start()`` starts the process and reads its hello
    (``HandshakeError`` when that fails, or when no hello comes within
    ``start_timeout`` seconds). Then ``backend.keep_top_k(scores=...,
    k=...)`` (or ``call``) sends one call and returns the decoded result;
    it raises ``NotProvided`` on a ``not_provided`` answer, ``BackendError`` on
    an ``error`` answer or an undecodable result, and ``ProcessFailure`` when the
    process dies, exceeds ``timeout`` seconds, or writes anything but the answer
    (the process is then stopped, and the next call starts a new one).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        start_timeout: float = START_TIMEOUT,
        env: dict[str, str] | None = None,
        label: str | None = None,
    ):
        if not argv:
            raise ValueError("the backend command is empty")
        if not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.argv = [str(a) for a in argv]
        self.timeout = float(timeout)
        self.start_timeout = float(start_timeout)
        self.env = env
        self.label = label or shlex.join(self.argv)
        self.hello: dict[str, Any] | None = None
        self.restarts = 0
        self._next_id = 1
        self._last = "none"
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._writes: queue.Queue[bytes | None] = queue.Queue()

    # ------------------------------------------------------------------ protocol surface
    @property
    def name(self) -> str:
        return self.hello["backend"] if self.hello else self.label

    @property
    def operations(self) -> list[str]:
        return list(self.hello["operations"]) if self.hello else []

    @property
    def profile(self) -> str:
        return self.hello["profile"] if self.hello else "reference"

    def __getattr__(self, op: str) -> Any:
        hello = self.__dict__.get("hello")
        if op in OPERATIONS and hello is not None and op in hello["operations"]:
            return functools.partial(self._call_keywords, op)
        raise AttributeError(op)

    def _call_keywords(self, op: str, /, **kwargs: Any) -> Any:
        return self.call(op, kwargs)

    # ------------------------------------------------------------------ life cycle
    def start(self) -> dict[str, Any]:
        """Start the process and read its hello; returns the hello message."""
        self.launch()
        return self.handshake()

    def launch(self) -> None:
        """Start the process without waiting for its hello (``handshake`` reads it)."""
        self._stderr = tempfile.TemporaryFile()
        try:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env=self.env,
                start_new_session=(os.name == "posix"),
            )
        except OSError as exc:
            self._stderr.close()
            self._stderr = None
            raise HandshakeError(
                f"cannot start the backend process {self.label!r}: {exc}"
            ) from None
        self._lines, self._writes = queue.Queue(), queue.Queue()
        threading.Thread(
            target=_read_lines, args=(self._proc.stdout, self._lines), daemon=True
        ).start()
        threading.Thread(
            target=_write_lines, args=(self._proc.stdin, self._writes), daemon=True
        ).start()

    def handshake(self) -> dict[str, Any]:
        """Read and check the launched process's hello; returns it."""
        try:
            line: bytes | None = self._lines.get(timeout=self.start_timeout)
        except queue.Empty:
            line = b""
            why: str | None = f"sent no hello line within {self.start_timeout:g} s"
            grace = 0.0
        else:
            why = "exited before its hello line" if line is None else None
            grace = 2.0 if line is None else 0.0
        if why is None:
            line = cast(bytes, line)  # why is None: the line came
            hello, problem = _parse(line)
            if problem is None and hello.get("type") != "hello":
                problem = f"its first line must be a hello message, got type {hello.get('type')!r}"
            if problem is None:
                problem = _hello_problem(hello)
            if (
                problem is None
                and self.hello is not None
                and (
                    hello["operations"] != self.hello["operations"]
                    or hello["profile"] != self.hello["profile"]
                )
            ):
                problem = "a restarted process must send the same operations and profile"
            if problem is None:
                self.hello = hello
                return hello
            why = f"sent a wrong hello line: {problem}\n  the line: {_clip(line)}"
        status = self._stop(grace)
        raise HandshakeError(f"the backend process {self.label!r} {why}{status}{self._tail()}")

    def close(self) -> None:
        """Close the process's stdin, give it a moment to exit, then stop it."""
        if self._proc is None:
            return
        self._writes.put(None)
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._stop()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> ProcessBackend:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _stop(self, grace: float = 0.0) -> str:
        """Kill the process (its whole process group) if needed; text describing how it ended.

        ``grace``: seconds to wait for a process that is exiting by itself (its stdout ended).
        """
        proc, self._proc = self._proc, None
        if proc is None:
            return ""
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        if proc.poll() is None:
            try:
                if os.name == "posix":
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    proc.kill()
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
            status = ""
        else:
            status = _exit_status(proc.returncode)
        self._writes.put(None)
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream:
                    stream.close()
            except OSError:
                pass
        return status

    def _tail(self) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - STDERR_TAIL))
            text = self._stderr.read().decode("utf-8", "replace").rstrip()
        except (OSError, ValueError):
            text = ""
        finally:
            self._stderr.close()
            self._stderr = None
        if not text:
            return "\n  (its stderr is empty)"
        if size > STDERR_TAIL:
            text = "..." + text
        return "\n  its stderr ends with:\n" + "\n".join("    " + t for t in text.splitlines())

    # ------------------------------------------------------------------ calls
    def request_line(
        self, op: str, args: dict[str, Any], *, encoded: bool = False, call_id: int = 1
    ) -> str:
        """The call line for ``op(**args)``, as the runner sends it."""
        return dumps(call_message(call_id, op, args, encoded=encoded))

    def call(self, op: str, args: dict[str, Any], *, encoded: bool = False) -> Any:
        """Send ``op`` with the keyword arguments ``args``; the decoded result.

        ``encoded``: ``args`` are already in the golden encoding (a golden case's inputs).
        """
        if self._proc is None:
            self._restart(op)
        call_id, self._next_id = self._next_id, self._next_id + 1
        try:  # a line already waiting answers nothing that was asked
            stale = self._lines.get_nowait()
        except queue.Empty:
            pass
        else:
            if stale is None:
                self._fail(
                    f"the backend process ended before request {call_id} ({op}) was sent", grace=2.0
                )
            self._fail(
                f"protocol error before request {call_id} ({op}) was sent: the process "
                f"wrote a line after its last answer (request {self._last})\n"
                f"  the line: {_clip(stale)}\n"
                "  (stdout carries only protocol lines; write anything else to stderr)"
            )
        self._last = f"{call_id}, {op}"
        line = self.request_line(op, args, encoded=encoded, call_id=call_id).encode("ascii")
        self._writes.put(line + b"\n")
        deadline = time.monotonic() + self.timeout
        what = f"request {call_id} ({op})"
        try:
            answer = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            self._fail(
                f"no answer to {what} within {self.timeout:g} s (--timeout); "
                "the process was stopped"
            )
        if answer is None:
            self._fail(f"the backend process ended while answering {what}", grace=2.0)
        message, problem = _parse(answer)
        if problem is None and message.get("type") in ("hello", "call"):
            problem = f"a {message['type']} message is not an answer"
        if (
            problem is None
            and message["id"] != call_id
            and not (message["type"] == "error" and message["id"] is None)
        ):  # "cannot read the call"
            if message["id"] is not None and message["id"] < call_id:
                problem = (
                    f"it answered request {message['id']}, which was already answered "
                    f"(a second answer or an extra line), while {what} was waiting"
                )
            else:
                problem = f"it answered request {message['id']} while {what} was waiting"
        if problem is not None:
            self._fail(
                f"protocol error while waiting for the answer to {what}: {problem}\n"
                f"  the line: {_clip(answer)}\n"
                "  (stdout carries only protocol lines; write anything else to stderr)"
            )
        if message["type"] == "not_provided":
            raise NotProvided(message.get("message", ""))
        if message["type"] == "error":
            text = f"{op} failed in the backend: {message['error']}: {message['message']}"
            if message.get("traceback"):
                text += "\n" + message["traceback"].rstrip()
            raise BackendError(text)
        try:
            return decode_value(message["value"], "value")
        except ValueError as exc:
            raise BackendError(
                f"{op} answered a value that is not in the golden files' encoding: {exc}"
            ) from None

    def _restart(self, op: str) -> None:
        try:
            self.start()
        except HandshakeError as exc:
            raise ProcessFailure(f"could not restart the backend process for {op}: {exc}") from None
        self.restarts += 1

    def _fail(self, message: str, grace: float = 0.0) -> NoReturn:
        status = self._stop(grace)
        raise ProcessFailure(f"{message}{status}{self._tail()}")


def _read_lines(stream: IO[bytes], lines: queue.Queue[bytes | None]) -> None:
    try:
        for line in stream:
            lines.put(line)
    except (OSError, ValueError):
        pass
    lines.put(None)


def _write_lines(stream: IO[bytes], writes: queue.Queue[bytes | None]) -> None:
    while True:
        data = writes.get()
        if data is None:
            break
        try:
            stream.write(data)
            stream.flush()
        except (OSError, ValueError):  # the process is gone; the reader sees the end
            break
    try:
        stream.close()
    except (OSError, ValueError):
        pass


def _parse(line: bytes) -> tuple[dict[str, Any], str | None]:
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}, "the line is not JSON"
    problem = message_problem(message)
    return (message if problem is None else {}), problem


def _hello_problem(hello: dict[str, Any]) -> str | None:
    if hello["protocol"] != PROTOCOL:
        return f"protocol must be {PROTOCOL!r}, got {hello['protocol']!r}"
    if hello["version"] != VERSION:
        return f"it speaks protocol version {hello['version']}; this runner speaks {VERSION}"
    unknown = [op for op in hello["operations"] if op not in OPERATIONS]
    if unknown:
        return f"unknown operations {unknown}; the protocol's are {sorted(OPERATIONS)}"
    if len(set(hello["operations"])) != len(hello["operations"]):
        return "an operation is listed twice"
    return None


def _clip(line: bytes, limit: int = 200) -> str:
    text = repr(line.rstrip(b"\n"))[2:-1]
    return text if len(text) <= limit else text[:limit] + f"... ({len(line)} bytes)"


def _exit_status(code: int | None) -> str:
    if code is None:
        return ""
    if code < 0:
        try:
            return f"; killed by signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"; killed by signal {-code}"
    return f"; it exited with status {code}"


def serve_command(spec: str, profile: str | None = None) -> list[str]:
    """The command that serves the Python backend ``spec`` with this interpreter."""
    argv = [sys.executable, "-m", "conformance", "serve", spec]
    return argv + (["--profile", profile] if profile else [])


def child_environment() -> dict[str, str]:
    """The environment for a served Python backend: this one, with this process's import path.

    A backend importable here (from the working directory, a test's directory)
    is importable in the worker too.
    """
    env = dict(os.environ)
    paths = [os.path.abspath(p or os.curdir) for p in sys.path]
    paths = [p for p in dict.fromkeys(paths) if os.path.isdir(p)]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


# --------------------------------------------------------------------------- the server
def serve(
    spec: str,
    profile: str | None = None,
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
) -> int:
    """Serve the Python backend ``spec`` over the wire protocol until stdin ends.

    Writes the hello, then answers each call. Whatever the backend raises
    (``SystemExit`` and ``KeyboardInterrupt`` included) becomes an ``error``
    answer, as does a result that cannot be encoded or an argument the call
    modified (the arguments are compared with copies taken before the call).
    Protocol lines go to the original stdout; anything the backend prints goes
    to stderr.
    """
    if stdout is None:
        stdout = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
        sys.stdout.flush()
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
        sys.stdout = sys.stderr
    stdin = sys.stdin.buffer if stdin is None else stdin
    try:
        backend = load_backend(spec)
    except Exception as exc:  # noqa: BLE001 - any import failure is reported, then exit 2
        print(
            f"error: cannot load the backend {spec!r}: {type(exc).__name__}: {exc}", file=sys.stderr
        )
        return 2
    ops = [op for op in OPERATIONS if _provides(backend, op)]
    claimed = profile or getattr(backend, "profile", None)
    claimed = claimed if isinstance(claimed, str) else "reference"
    _send(stdout, hello_message(backend_name(backend), ops, claimed))
    for line in stdin:
        if line.strip():
            _send(stdout, answer(backend, ops, line))
    return 0


def _provides(backend: Any, op: str) -> bool:
    try:
        return provides(backend, op)
    except Exception:  # noqa: BLE001 - an attribute that raises is not an operation
        return False


def _send(stdout: IO[bytes], message: dict[str, Any]) -> None:
    stdout.write(dumps(message).encode("ascii") + b"\n")
    stdout.flush()


def answer(backend: Any, ops: Sequence[str], line: bytes) -> dict[str, Any]:
    """The answer to one call line."""
    message, problem = _parse(line)
    if problem is None and message["type"] != "call":
        problem = f"expected a call message, got {message['type']!r}"
    if problem is not None:
        call_id = message.get("id") if _is_int(message.get("id")) else None
        return error_message(call_id, "ProtocolError", problem)
    call_id, op = message["id"], message["op"]
    if op not in ops:
        return {
            "type": "not_provided",
            "id": call_id,
            "message": f"{op!r} is not among the operations this backend provides",
        }
    try:  # the runner's encoding is trusted: decoded, not linted
        args = golden.decode(message["args"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return error_message(call_id, "ProtocolError", f"cannot decode the arguments: {exc!r}")
    before = snapshot(args)
    try:
        value = getattr(backend, op)(**args)
    except NotProvided as exc:
        return {"type": "not_provided", "id": call_id, "message": str(exc)}
    except BaseException as exc:  # noqa: BLE001 - SystemExit, KeyboardInterrupt: the call failed
        return error_message(call_id, type(exc).__name__, str(exc), _traceback_tail(exc))
    changed = changed_arguments(before, args)
    if changed:
        return error_message(call_id, "ArgumentsModified", f"{op} modified its arguments {changed}")
    try:
        return result_message(call_id, value)
    except (TypeError, ValueError) as exc:
        return error_message(
            call_id,
            "UnencodableResult",
            f"{op} returned a value of type {type(value).__name__} that the "
            f"protocol cannot carry: {exc}",
        )


def _traceback_tail(exc: BaseException, frames: int = 3) -> str:
    tb = traceback.extract_tb(exc.__traceback__)[1:][-frames:]  # without answer()'s frame
    return "".join(traceback.format_list(tb))
