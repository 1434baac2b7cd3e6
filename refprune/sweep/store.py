"""The output directory of a sweep: one checked JSON file per finished run, written atomically.

Layout::

    OUT/sweep.json        the plan: the normalised sweep configuration and its run ids, grid order
    OUT/runs/<id>.json    one finished run (``refprune.sweep.job.execute``)
    OUT/failed/<id>.json  the last failure of a run that is not finished (error, attempts)
    OUT/.lock             held while a sweep writes here (one sweep per directory at a time)

A file is written to a temporary name in the same directory, flushed to disk,
then renamed over its final name (``os.replace``, atomic on POSIX and
Windows): a reader sees the whole file or none, so a half-written run never
counts. A run file counts as finished only after ``read_run`` has checked it:
valid JSON, the right format, a ``run_id`` equal to its file name and to the
SHA-256 of its configuration, and a ``result_sha256`` equal to the SHA-256 of
its result. A file that fails a check stops the sweep and the report with an
error naming it: a tampered or damaged result is never read as a result.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from .config import FORMAT_VERSION, PLAN_FORMAT, RUN_FORMAT, run_id

_ID = re.compile(r"^[0-9a-f]{64}$")


class StoreError(RuntimeError):
    """A file of the output directory that is not what it claims to be; the message names it."""


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that no reader ever sees a partial file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def check_run(doc: Any, expected_id: str | None = None, where: str = "run file") -> dict[str, Any]:
    """Check a parsed run file (module docstring) and return it; ``StoreError`` says what fails."""
    from .job import result_sha256

    if not isinstance(doc, dict) or doc.get("format") != RUN_FORMAT:
        raise StoreError(f"{where}: not a {RUN_FORMAT} file")
    if doc.get("version") != FORMAT_VERSION:
        raise StoreError(
            f"{where}: format version {doc.get('version')!r}, this refprune reads {FORMAT_VERSION}"
        )
    for key in ("run_id", "config", "trace", "metrics", "result_sha256"):
        if key not in doc:
            raise StoreError(f"{where}: missing {key!r}")
    if run_id(doc["config"]) != doc["run_id"]:
        raise StoreError(f"{where}: run_id is not the SHA-256 of its configuration")
    if expected_id is not None and doc["run_id"] != expected_id:
        raise StoreError(f"{where}: holds run {doc['run_id']}, expected {expected_id}")
    if result_sha256({"trace": doc["trace"], "metrics": doc["metrics"]}) != doc["result_sha256"]:
        raise StoreError(
            f"{where}: result_sha256 does not match its trace and metrics (modified or damaged)"
        )
    return doc


class RunStore:
    """Reads and writes one sweep's output directory."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.runs = self.root / "runs"
        self.failed = self.root / "failed"
        self._lock_fh: IO[str] | None = None

    # ------------------------------------------------------------ writing
    def open(self) -> RunStore:
        """Create the directories and take the lock (``StoreError`` if another sweep holds it)."""
        self.runs.mkdir(parents=True, exist_ok=True)
        self.failed.mkdir(exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self
        fh = open(self.root / ".lock", "a")  # noqa: SIM115 (held until close)
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise StoreError(f"{self.root}: another sweep is writing to this directory") from None
        self._lock_fh = fh
        for stale in list(self.runs.glob(".*.tmp")) + list(self.failed.glob(".*.tmp")):
            stale.unlink()  # left by a sweep that was killed
        return self

    def close(self) -> None:
        if self._lock_fh is not None:
            self._lock_fh.close()  # releases the lock
            self._lock_fh = None

    def __enter__(self) -> RunStore:  # noqa: PYI034 (3.10: no Self)
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write_plan(self, config: Mapping[str, Any], ids: list[str]) -> None:
        doc = {
            "format": PLAN_FORMAT,
            "version": FORMAT_VERSION,
            "config": dict(config),
            "runs": ids,
        }
        write_atomic(self.root / "sweep.json", json.dumps(doc, indent=1) + "\n")

    def write_run(self, expected_id: str, text: str) -> None:
        """Check a run's text (``check_run``) and store it atomically; clears its failure record."""
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise StoreError(f"result of run {expected_id} is not JSON: {exc}") from None
        check_run(doc, expected_id, f"result of run {expected_id}")
        write_atomic(self.runs / f"{expected_id}.json", text)
        try:
            (self.failed / f"{expected_id}.json").unlink()
        except FileNotFoundError:
            pass

    def write_failure(self, rid: str, label: str, attempts: int, error: str) -> None:
        doc = {"run_id": rid, "run": label, "attempts": attempts, "error": error}
        write_atomic(self.failed / f"{rid}.json", json.dumps(doc, indent=1) + "\n")

    # ------------------------------------------------------------ reading
    def has_run(self, rid: str) -> bool:
        """True when the run's file exists and passes ``check_run``; ``StoreError`` if it fails."""
        path = self.runs / f"{rid}.json"
        if not path.exists():
            return False
        self.read_run(rid)
        return True

    def read_run(self, rid: str) -> dict[str, Any]:
        path = self.runs / f"{rid}.json"
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise StoreError(f"{path}: not valid JSON ({exc}); delete it to run it again") from None
        try:
            return check_run(doc, rid, str(path))
        except StoreError as exc:
            raise StoreError(f"{exc}; delete it to run it again") from None

    def read_plan(self) -> dict[str, Any]:
        path = self.root / "sweep.json"
        if not path.exists():
            raise StoreError(f"{self.root}: no sweep.json here (not a sweep output directory)")
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise StoreError(f"{path}: not valid JSON ({exc})") from None
        if (
            not isinstance(doc, dict)
            or doc.get("format") != PLAN_FORMAT
            or not isinstance(doc.get("runs"), list)
        ):
            raise StoreError(f"{path}: not a {PLAN_FORMAT} file")
        bad = [r for r in doc["runs"] if not isinstance(r, str) or not _ID.match(r)]
        if bad:
            raise StoreError(f"{path}: {bad[0]!r} is not a run id")
        return doc

    def failures(self) -> dict[str, dict[str, Any]]:
        out = {}
        for path in sorted(self.failed.glob("*.json")):
            try:
                out[path.stem] = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise StoreError(f"{path}: not valid JSON ({exc})") from None
        return out
