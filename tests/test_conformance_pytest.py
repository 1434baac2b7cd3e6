"""The pytest entry: one test per golden case and property, failures with their diff."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A guard against a hung child, not a speed limit: a loaded 2-core machine needs minutes.
HANG = 1800


def _pytest(*args, cwd):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "conformance.pytest_plugin",
            "--pyargs",
            "conformance",
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=HANG,
    )


def test_defects_fail_and_gaps_skip_from_pytest(tmp_path):
    (tmp_path / "floorbackend.py").write_text(
        "import math\n"
        "class Floor:\n"
        "    def fraction_to_count(self, *, fraction, n, rounding):\n"
        "        return int(math.floor(fraction * n))\n"
    )
    from conformance.runner import run

    sys.path.insert(0, str(tmp_path))
    try:
        failing = run("floorbackend:Floor", families=["masks"], properties=False).failures[0].id
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("floorbackend", None)
    (tmp_path / "xfails.txt").write_text(f"{failing}\n")
    proc = _pytest(
        "--conformance-backend",
        "floorbackend:Floor",
        "--conformance-family",
        "masks",
        "--conformance-max-examples",
        "3",
        "--conformance-xfails-file",
        "xfails.txt",
        "-rfx",
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED" in proc.stdout and "masks-" in proc.stdout
    assert "skipped" in proc.stdout and "xfailed" in proc.stdout


def test_reference_passes_from_a_checkout_path():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "conformance",
            "--conformance-backend",
            "conformance.backend:ReferenceBackend",
            "--conformance-family",
            "schedules",
            "--conformance-max-examples",
            "2",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=HANG,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " passed" in proc.stdout and "failed" not in proc.stdout


def test_every_option_is_prefixed():
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "conformance.pytest_plugin", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=HANG,
    )
    text = proc.stdout
    for name in (
        "backend",
        "backend-cmd",
        "in-process",
        "timeout",
        "profile",
        "family",
        "xfails-file",
        "max-examples",
        "seed",
        "golden-dir",
    ):
        assert f"--conformance-{name}" in text
    for name in ("--backend", "--profile", "--family", "--xfails-file"):
        assert f"  {name} " not in text and f"  {name}=" not in text


def test_a_session_that_checked_nothing_fails(tmp_path):
    proc = _pytest(
        "--conformance-backend", "os:path", "--conformance-family", "schedules", cwd=tmp_path
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "nothing was checked" in proc.stdout and "failed" not in proc.stdout.splitlines()[-1]


def test_a_backend_process_under_pytest(tmp_path):
    fake = f"{sys.executable} {ROOT / 'tests' / 'wire_fake_backend.py'}"
    proc = _pytest(
        "--conformance-backend-cmd",
        f"{fake} crash",
        "--conformance-family",
        "masks",
        "--conformance-max-examples",
        "2",
        "-k",
        "keep_top_k or keep-top-k",
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "the backend process ended while answering request" in proc.stdout
    assert "exited with status 3" in proc.stdout and "--backend-cmd" in proc.stdout
