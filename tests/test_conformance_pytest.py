"""The pytest entry: one test per golden case and property, failures with their diff."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pytest(*args, cwd):
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "conformance.pytest_plugin", "--pyargs", "conformance", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def test_defects_fail_and_gaps_skip_from_pytest(tmp_path):
    (tmp_path / "floorbackend.py").write_text(
        "import math\n"
        "class Floor:\n"
        "    def fraction_to_count(self, *, fraction, n, rounding):\n"
        "        return int(math.floor(fraction * n))\n")
    from conformance.runner import run
    sys.path.insert(0, str(tmp_path))
    try:
        failing = run("floorbackend:Floor", families=["masks"], properties=False).failures[0].id
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("floorbackend", None)
    (tmp_path / "xfails.txt").write_text(f"{failing}\n")
    proc = _pytest("--backend", "floorbackend:Floor", "--family", "masks", "--conformance-max-examples", "3",
                   "--xfails-file", "xfails.txt", "-rfx", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED" in proc.stdout and "masks-" in proc.stdout
    assert "skipped" in proc.stdout and "xfailed" in proc.stdout


def test_reference_passes_from_a_checkout_path():
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "conformance",
                           "--backend", "conformance.backend:ReferenceBackend", "--family", "schedules",
                           "--conformance-max-examples", "2"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " passed" in proc.stdout and "failed" not in proc.stdout
