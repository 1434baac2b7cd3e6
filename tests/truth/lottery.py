"""One IMP round's rewound parameters: copies of the rewind point under the new masks.

imp_round's float output is params = rewind_params * masks: every entry is a kept
entry of ``rewind_params``, bit for bit, or +0.0. Its masks (a selection by
|trained * masks|, exact comparisons of the given floats) are the masks family's
business; the copy is checked here against the case's own masks.

Full IMP runs (``imp``) are excluded: their floats come from many full-batch SGD
steps on a non-convex loss, whose error growth has no useful a-priori bound (no
contraction), and their masks come from comparisons of the trained weights.
The trace is the float64 iteration itself; tests/test_conformance_golden.py
and the regeneration test pin it instead.
"""

from __future__ import annotations

from typing import Any

from mpmath import mpf

from .cases import Array


def truth(op: str, inputs: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    masks = expected["result"]["masks"]
    params = {}
    for name, a in inputs["rewind_params"].items():
        keep = masks[name].data
        kept = [mpf(x) if k else mpf(0) for x, k in zip(a.data, keep)]
        params[name] = Array("float64", a.shape, kept)
    return {"result": {"params": params}}


OPS = ("imp_round",)
