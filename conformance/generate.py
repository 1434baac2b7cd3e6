"""Rebuild every golden file from the reference: ``python -m conformance generate [--out DIR]``.

Deterministic: the same code gives the same bytes. Expected outputs are the
reference backend's answers to each case's inputs (after the inputs have been
through the file encoding, so what is stored is exactly what was computed
from). Case ids come from the registry ``ids.txt``: a case keeps its id for as
long as its key exists, a new case gets the next unused id, and an id is never
reused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import golden
from .backend import OPERATIONS, ReferenceBackend
from .families import CaseSpec, Family, load_families

GENERATOR_VERSION = "1"


def _case_object(family: Family, spec: CaseSpec, case_id: int, reference: Any) -> dict[str, Any]:
    if spec.op not in family.operations:
        raise ValueError(f"{family.name}/{spec.key}: op {spec.op!r} is not an operation of the family")
    inputs = golden.decode(golden.encode(spec.inputs))
    output = OPERATIONS[spec.op].output
    expected = spec.expected
    if expected is None:
        expected = {output: getattr(reference, spec.op)(**inputs)}
    expected = golden.decode(golden.encode(expected))
    tolerance = {name: family.tolerance(spec.op, value, inputs) for name, value in expected.items()}
    for name, tol in (spec.tolerance or {}).items():
        tolerance[name] = dict(tol)
    unknown = sorted(set(spec.flags) - set(family.notes))
    if unknown:
        raise ValueError(f"{family.name}/{spec.key}: flags {unknown} are not defined in the notes")
    return {"id": case_id, "op": spec.op, "comment": spec.comment, "flags": sorted(set(spec.flags)),
            "inputs": golden.encode(inputs), "expected": golden.encode(expected),
            "tolerance": golden.encode(tolerance)}


def build(family: Family, ids: dict[str, int], reference: Any | None = None) -> dict[str, Any]:
    """The JSON object of one family file; new keys are added to ``ids``."""
    reference = reference or ReferenceBackend()
    specs = list(family.cases())
    keys = [f"{family.name}/{s.key}" for s in specs]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise ValueError(f"duplicate case keys: {dupes}")
    cases = []
    for key, spec in zip(keys, specs):
        if key not in ids:
            ids[key] = max(ids.values(), default=0) + 1
        cases.append(_case_object(family, spec, ids[key], reference))
    used = sorted({f for c in cases for f in c["flags"]})
    return {
        "schema_version": golden.SCHEMA_VERSION,
        "generator_version": GENERATOR_VERSION,
        "generator": "python -m conformance generate",
        "family": family.name,
        "algorithm": family.algorithm.splitlines(),
        "notes": {flag: family.notes[flag] for flag in used},
        "operations": {op: OPERATIONS[op].summary for op in family.operations
                       if any(c["op"] == op for c in cases)},
        "number_of_cases": len(cases),
        "cases": cases,
    }


def generate(out: Path | str = golden.GOLDEN_DIR, *, ids_from: Path | str = golden.GOLDEN_DIR
             ) -> list[Path]:
    """Write every family file, ``ids.txt`` and ``MANIFEST.txt`` into ``out``; return the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ids = golden.read_ids(ids_from)
    reference = ReferenceBackend()
    written = []
    for family in load_families().values():
        obj = build(family, ids, reference)
        path = out / f"{family.name}.json"
        path.write_text(golden.dumps(obj) + "\n", encoding="ascii")
        written.append(path)
    (out / golden.IDS).write_text(golden.ids_text(ids), encoding="ascii")
    written.append(out / golden.IDS)
    (out / golden.MANIFEST).write_text(golden.manifest_text(out), encoding="ascii")
    written.append(out / golden.MANIFEST)
    return written
