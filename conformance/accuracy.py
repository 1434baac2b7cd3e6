"""How close the reference's golden outputs are to the exact values: one bound per operation.

For every float entry y_i that a golden case of operation ``op`` expects, with t_i
the exact value of the same formula on the case's inputs (computed to 30-340
significant digits by ``tests/truth``),

    |y_i - t_i| <= U * 2**-52 * s_i,        U = bound(op, inputs),

where s_i is the entry's scale: max(|t_i|, S_i), S_i = sum_x |x dt_i/dx| over the
float inputs x of the case (the entry's sensitivity to relative perturbations of
its inputs; S_i / |t_i| is its componentwise condition number), or the scale the
golden file stores for the entry. So U is "ulps" where the entry is
well-conditioned and "ulps times the condition number" where it is not.
Exceptions to S_i (docs/golden_format.md, "Accuracy of the reference"): OBS adds
the sensitivity to entrywise perturbations of the damped Hessian it inverts,
ISTA / IHT iterates use the drift bound of the iteration, schedules the running
error bound of their documented float64 expressions.

The tolerances of the golden cases are derived from these bounds, so that any
answer at least as accurate as the reference passes; ``tests/truth`` checks
that the reference meets them (``python -m tests.truth.report`` prints the
measured errors).

Keys are operation names, or ``op:variant`` where one variant of an operation
is much less accurate than the others (``scores:obs``, a matrix inverse).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: U per operation (units of 2**-52 * s_i). 0: a bit-for-bit copy of an input.
REFERENCE_ERROR_BOUND: dict[str, float] = {
    # curvature: derivatives of small MLPs (measured worst 0.3-1.1)
    "loss_value": 4,
    "gradient": 4,
    "hvp": 4,
    "full_hessian": 4,
    "hessian_diag": 4,
    "hutchinson_diag": 4,
    # scores (measured worst 0.64; obs 0.76 with the matrix's share in s_i)
    "scores": 4,
    "scores:obs": 4,
    "obs_prune": 4,
    # sparse approximation
    "hard_threshold": 0,
    "hard_threshold_prox": 0,
    "soft_threshold": 0.5,           # one subtraction, correctly rounded
    "sparse_approx_exact": 4,        # copies, except the quadratic problem's solve (0.31)
    "ista": 4,                       # in units of the drift bound (measured 0.08)
    "iht": 4,                        # (measured 0.06)
    # schedules: the documented float64 expressions (measured 0.25 of the running bound)
    "schedule": 1,
    # lottery: rewound parameters are copies
    "imp_round": 0,
}


def bound(op: str, inputs: Mapping[str, Any] | None = None) -> float:
    """U for a case of ``op`` with these inputs (``op:variant`` first where one exists)."""
    if op == "scores" and inputs is not None and f"scores:{inputs.get('rule')}" in \
            REFERENCE_ERROR_BOUND:
        return REFERENCE_ERROR_BOUND[f"scores:{inputs['rule']}"]
    return REFERENCE_ERROR_BOUND[op]
