"""A backend in another language: the masks family in plain Node.js, through the wire protocol.

``tests/backends/node/masks_backend.js`` was written from docs/wire_protocol.md and the
operations' docstrings; it parses the encoding itself, hex floats included. It passes every
golden case and property of the masks family through ``--backend-cmd``, and its copy with
one defect (``ties_to_higher_index.js``: equal scores keep the higher index) fails, with
the checks that catch it named.
"""

import json
import math
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conformance import __main__ as cli
from conformance import golden
from conformance.families import load_families
from conformance.wire import message_problem

ROOT = Path(__file__).resolve().parents[1]
NODE_DIR = ROOT / "tests" / "backends" / "node"
BACKEND = f"node {NODE_DIR / 'masks_backend.js'}"
DEFECT = f"node {NODE_DIR / 'ties_to_higher_index.js'}"
MASKS_OPS = ["fraction_to_count", "keep_top_k", "select_masks", "prune_units", "n_m_mask"]

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None,
    reason="node (Node.js 20) is not on PATH: the Node.js backend cannot run here",
)


def _run(cmd, tmp_path, *extra):
    """``python -m conformance run --backend-cmd CMD --family masks``: exit status and report."""
    path = tmp_path / "report.json"
    status = cli.main(
        ["run", "--backend-cmd", cmd, "--family", "masks", "--report", str(path), *extra]
    )
    return status, json.loads(path.read_text())


def _case_id(key):
    """The golden id of a case, by its stable key in ids.txt."""
    for line in (golden.GOLDEN_DIR / "ids.txt").read_text().splitlines():
        if line and not line.startswith("#") and line.split(" ", 1)[1] == key:
            return line.split(" ", 1)[0]
    raise KeyError(key)


def test_the_node_backend_passes_the_whole_masks_family(tmp_path, capsys):
    status, report = _run(BACKEND, tmp_path)
    out = capsys.readouterr().out
    masks = golden.load(golden.GOLDEN_DIR / "masks.json")
    properties = load_families()["masks"].properties
    assert status == 0 and report["ok"], out
    assert report["backend"] == "refprune masks in Node.js" and report["isolation"] == "process"
    assert report["operations"] == MASKS_OPS and report["profile"] == "reference"
    assert report["max_examples"] == 25 and report["restarts"] == 0
    # Every golden case and every property of the family was checked, once.
    expected = {str(c.id) for c in masks.cases} | {p.name for p in properties}
    assert sorted(r["id"] for r in report["results"]) == sorted(expected)
    assert report["checked"] == len(masks.cases) + len(properties) > 150
    assert {r["status"] for r in report["results"]} == {"passed"}
    assert "result: OK" in out and "unexpected failure" not in out


def test_the_copy_with_one_defect_fails_and_the_checks_are_named(tmp_path, capsys):
    status, report = _run(DEFECT, tmp_path, "--no-shrink")
    out = capsys.readouterr().out
    failed = {r["id"] for r in report["results"] if r["status"] == "failed"}
    ties_middle = _case_id("masks/keep_top_k/ties-middle/k=3")
    assert status == 1 and not report["ok"]
    assert ties_middle in failed and "masks/keep-top-k-differential" in failed
    assert f"FAILED masks case {ties_middle}: keep_top_k [ties]" in out
    assert "FAILED masks property masks/keep-top-k-differential: keep_top_k" in out
    # One defect, in the tie rule: every failing golden case has tied scores, and what does
    # not depend on ties (the counts, the properties that hold under any tie rule) passes.
    by_id = {r["id"]: r for r in report["results"]}
    assert all("ties" in by_id[i]["flags"] for i in failed if by_id[i]["kind"] == "golden")
    assert not any(by_id[i]["op"] == "fraction_to_count" for i in failed)
    assert by_id["masks/keep-top-k-count"]["status"] == "passed"
    assert by_id["masks/select-nesting-counts"]["status"] == "passed"


def _node_answers(lines):
    """The backend's stdout for the given input lines (its hello first), as parsed messages."""
    proc = subprocess.run(
        BACKEND.split(),
        input="".join(line + "\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_its_hex_float_reader_and_writer_are_exact(tmp_path):
    """The JavaScript parser and formatter, called directly, against Python's float.fromhex."""
    rng = np.random.default_rng(7)
    words = rng.integers(0, 2**64, size=3000, dtype=np.uint64)
    floats = [
        x
        for x in (struct.unpack("<d", struct.pack("<Q", int(w)))[0] for w in words)
        if math.isfinite(x)
    ] + [0.0, -0.0, 5e-324, -5e-324, 2.0**-1022]
    written = [golden.encode(x)["float64"] for x in floats]
    # Other spellings of the same values, and values that must be rounded once on reading.
    other = [
        "0x1.8000000000000p+1",
        "0x3p-1",
        "0x10p-4",
        "0X1.8P1",
        "0x1.p+0",
        "0x1p-1075",
        "0x1.0000000000001p-1075",
        "0x3p-1076",
        "0x0.00000000000008p-1022",
        "0x0.00000000000018p-1022",
        "0x1.fffffffffffff7p+1023",
        "0xffffffffffffffffp-64",
    ]
    script = tmp_path / "hex.js"
    script.write_text(
        f"const b = require({json.dumps(str(NODE_DIR / 'masks_backend.js'))});\n"
        "const inp = JSON.parse(require('fs').readFileSync(0, 'utf8'));\n"
        "console.log(JSON.stringify(inp.map((h) => b.formatHexFloat(b.parseHexFloat(h)))));\n"
    )
    proc = subprocess.run(
        ["node", str(script)],
        input=json.dumps(written + other),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    got = json.loads(proc.stdout)
    assert got[: len(written)] == written
    assert got[len(written) :] == [golden.encode(float.fromhex(h))["float64"] for h in other]


def test_its_lines_follow_the_schema_and_a_bad_line_is_answered_as_an_error():
    import jsonschema

    schema = json.loads((ROOT / "conformance" / "wire_schema.json").read_text())
    calls = [
        {
            "type": "call",
            "id": 1,
            "op": "fraction_to_count",
            "args": {"fraction": {"float64": "0x1p-1"}, "n": 5, "rounding": "round-half-even"},
        },
        {
            "type": "call",
            "id": 2,
            "op": "keep_top_k",
            "args": {
                "k": 2,
                "scores": {
                    "ndarray": "float64",
                    "shape": [3],
                    "data": ["0x1p-1", "-0x0p+0", "0x1p+1"],
                },
            },
        },
        {
            "type": "call",
            "id": 3,
            "op": "fraction_to_count",
            "args": {"fraction": {"float64": "0x1.8p+1"}, "n": 5, "rounding": "floor"},
        },
        {"type": "call", "id": 4, "op": "hvp", "args": {}},
    ]
    answers = _node_answers([json.dumps(c) for c in calls] + ["not json"])
    for message in answers:
        jsonschema.validate(message, schema)
        assert message_problem(message) is None
    hello, two, mask, refused, unknown, garbage = answers
    assert hello["operations"] == MASKS_OPS and hello["version"] == 1
    assert two == {"type": "result", "id": 1, "value": 2}
    assert mask["value"] == {"ndarray": "bool", "shape": [3], "data": "101"}
    assert refused["type"] == "error" and refused["id"] == 3 and "fraction" in refused["message"]
    assert unknown["type"] == "error" and unknown["id"] == 4
    assert garbage["type"] == "error" and garbage["id"] is None
