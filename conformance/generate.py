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

import numpy as np

from . import accuracy, golden, margins
from .backend import OPERATIONS, ReferenceBackend
from .compare import tie_alternatives
from .families import COMMON_NOTES, CaseSpec, Family, load_families

GENERATOR_VERSION = "2"


def golden_tolerance(
    family: Family, op: str, value: Any, inputs: dict[str, Any], reference: Any
) -> dict[str, Any]:
    """The family's tolerance for ``op``; a 'close' one gets per-entry scales and the factor R.

    R = ``accuracy.tolerance_rel(op)``; the scales are ``accuracy.entry_scales`` of the
    reference's answer (the expected value and its conditioning, entry by entry).
    """
    tol = dict(family.tolerance(op, value, inputs))
    if "tie_alternatives" in tol:  # stored as the list, only where there is one
        alternatives = tie_alternatives(tol)
        del tol["tie_alternatives"]
        if alternatives:
            tol["tie_alternatives"] = alternatives
    if tol.get("kind") != "close":
        return tol
    if op == "schedule":  # a documented expression: its running bound
        scale = accuracy.schedule_scales(inputs["name"], inputs["options"], value)
    else:
        scale = accuracy.entry_scales(getattr(reference, op), inputs, value)
    if tol.get("signed_zeros"):
        for path, leaf in accuracy.float_leaves(value):
            s = accuracy._at(scale, path)
            if np.any((np.asarray(leaf) == 0) & (np.asarray(s) != 0)):
                raise ValueError(
                    f"{op}: signed zeros promised, but an expected zero at {path} "
                    "has a non-zero scale"
                )
    return dict(tol, rel=accuracy.tolerance_rel(op, inputs), scale=scale)


def _case_object(family: Family, spec: CaseSpec, case_id: int, reference: Any) -> dict[str, Any]:
    if spec.op not in family.operations:
        raise ValueError(
            f"{family.name}/{spec.key}: op {spec.op!r} is not an operation of the family"
        )
    inputs = golden.decode(golden.encode(spec.inputs))
    output = OPERATIONS[spec.op].output
    expected = spec.expected
    if expected is None:
        expected = {output: getattr(reference, spec.op)(**inputs)}
    expected = golden.decode(golden.encode(expected))
    tolerance = {
        name: golden_tolerance(family, spec.op, value, inputs, reference)
        for name, value in expected.items()
    }
    for name, tol in (spec.tolerance or {}).items():
        tolerance[name] = dict(tol)
    flags = set(spec.flags)
    if any(t.get("signed_zeros") for t in tolerance.values()):
        flags.add("signed-zeros")
    notes = {**COMMON_NOTES, **family.notes}
    unknown = sorted(flags - set(notes))
    if unknown:
        raise ValueError(f"{family.name}/{spec.key}: flags {unknown} are not defined in the notes")
    margin = margins.case_margin(spec.op, inputs, expected[output], reference, sorted(flags))
    return {
        "id": case_id,
        "op": spec.op,
        "comment": spec.comment,
        "flags": sorted(flags),
        "inputs": golden.encode(inputs),
        "expected": golden.encode(expected),
        "tolerance": golden.encode(tolerance),
        "margin": golden.encode(margin),
    }


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
        "notes": {flag: {**COMMON_NOTES, **family.notes}[flag] for flag in used},
        "operations": {
            op: OPERATIONS[op].summary
            for op in family.operations
            if any(c["op"] == op for c in cases)
        },
        "number_of_cases": len(cases),
        "cases": cases,
    }


def generate(
    out: Path | str = golden.GOLDEN_DIR, *, ids_from: Path | str = golden.GOLDEN_DIR
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
    (out / golden.SCHEMA).write_text(golden.schema_text(), encoding="ascii")
    written.append(out / golden.SCHEMA)
    (out / golden.MANIFEST).write_text(golden.manifest_text(out), encoding="ascii")
    written.append(out / golden.MANIFEST)
    return written
