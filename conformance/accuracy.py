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

The golden tolerances (``tolerance_rel``) and the portability of the golden files
(``PORTABILITY``, ``regeneration_problems``) are here too, next to the bounds they
derive from. Every golden float stores its scale s = max(|e|, c), c estimated by
the generator (``entry_scales``); one *unit* of an entry is 2**-52 * s.

* ``MACHINE_VARIATION_BOUND[family]``: how far, in units, the reference's own
  floats may move between machines (BLAS kernel, SIMD width, thread count) in the
  families whose files are not byte-identical everywhere.
* ``tolerance_rel(op, inputs)``: R of the tolerance |x - e| <= R * s: 2 U units
  times SCALE_ESTIMATE_FACTOR (the stored s may fall that far below S), and at
  least TOLERANCE_OVER_VARIATION machine variations, rounded up to a power of two.

docs/golden_format.md ("Tolerances", "Portability") gives the derivation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, cast

import numpy as np

EPS = 2.0**-52  # one unit, relative to an entry's scale

#: U per operation (units of 2**-52 * s_i). 0: a bit-for-bit copy of an input.
REFERENCE_ERROR_BOUND: dict[str, float] = {
    # Measured worst (python -m tests.truth.report), in units of 2^-52 max(|t|, S) with the
    # exact S / of 2^-52 s with the stored s; tests/truth checks both against U (the second
    # times SCALE_ESTIMATE_FACTOR where s is estimated).
    # curvature: derivatives of small MLPs (at most 1.06 / 7.1)
    "loss_value": 4,
    "gradient": 4,
    "hvp": 4,
    "full_hessian": 4,
    "hessian_diag": 4,
    "hutchinson_diag": 4,
    # scores: 0.64 / 2.4; OBS 0.38 / 41 and 0.66 / 9.6 (s misses the inverted matrix's share)
    "scores": 4,
    "scores:obs": 4,
    "obs_prune": 4,
    # sparse approximation
    "hard_threshold": 0,
    "hard_threshold_prox": 0,
    "soft_threshold": 0.5,  # one subtraction, correctly rounded
    "sparse_approx_exact": 4,  # copies, except the quadratic problem's solve (0.31 / 0.36)
    "ista": 4,  # 0.08 of the drift bound / 1.65
    "iht": 4,  # 0.06 / 0.46
    # schedules: the documented float64 expressions, 0.25 of their running error bound (which
    # is also the stored scale, ``schedule_scales``)
    "schedule": 1,
    # lottery: rewound parameters are copies. imp (training traces) is not re-derived yet: a
    # provisional bound, 30 times its largest move between machines (2.1 units)
    "imp_round": 0,
    "imp": 64,
    # sparse_execution: reordered sums of at most 9 terms (fan-in 8 and the bias) in at most
    # 3 layers, and the activations' few ulps, bound the error by about 16 units of the
    # magnitude of the terms (docs/conformance.md, family sparse_execution)
    "sparse_forward": 16,
    "sparse_train_step": 16,
    # training: full-batch SGD trajectories, not re-derived either: the provisional bound of imp
    "train_steps": 64,
    # controls: copies of NumPy's draws times a float64 constant (one product, correctly rounded)
    "reinit": 0.5,
}


def bound(op: str, inputs: Mapping[str, Any] | None = None) -> float:
    """U for a case of ``op`` with these inputs (``op:variant`` first where one exists)."""
    if (
        op == "scores"
        and inputs is not None
        and f"scores:{inputs.get('rule')}" in REFERENCE_ERROR_BOUND
    ):
        return REFERENCE_ERROR_BOUND[f"scores:{inputs['rule']}"]
    return REFERENCE_ERROR_BOUND[op]


# Units a bounded family's floats may move between machines: about 4x the worst measured over
# OpenBLAS's Prescott, Sandybridge, Haswell and SkylakeX kernels, 1 and 2 threads, and NumPy's
# baseline SIMD loops (measured worst: curvature 3.2, scores 44, sparse_approx 1.2, lottery 2.1).
MACHINE_VARIATION_BOUND: dict[str, float] = {
    "curvature": 32.0,
    "scores": 256.0,
    "sparse_approx": 8.0,
    "lottery": 16.0,
    "sparse_execution": 8.0,
    "training": 16.0,
}
TOLERANCE_OVER_VARIATION = 8.0  # a tolerance is at least this many machine variations
# The stored scale s is an estimate of S (4 sign vectors see about the 2-norm of the per-input
# sensitivities, S is their 1-norm): s >= S / SCALE_ESTIMATE_FACTOR, checked by tests/truth.
SCALE_ESTIMATE_FACTOR = 16.0
MARGIN_BOUND = 2.0**-20  # least relative gap of a decision on computed floats

# "byte-identical": regenerating the family's file gives the same bytes on every machine
# (no BLAS, LAPACK or SIMD-dispatched transcendental function on its generation path).
# "bounded": every discrete output is identical and every float moves by at most
# MACHINE_VARIATION_BOUND units (tolerance scales and margins: see ``regeneration_problems``).
PORTABILITY: dict[str, str] = {
    "masks": "byte-identical",
    "profiles": "byte-identical",
    "schedules": "byte-identical",
    "curvature": "bounded",
    "scores": "bounded",
    "sparse_approx": "bounded",
    "lottery": "bounded",
    "sparse_execution": "bounded",
    "training": "bounded",
    "controls": "byte-identical",
}

PERTURBATION = 2.0**-24  # relative size of the perturbations of entry_scales
DIRECTIONS = 4  # seeded sign vectors, each applied with + and -
SEED = 20251202


def pow2_ceil(x: float) -> float:
    """The least power of two >= x (x > 0)."""
    m, e = math.frexp(x)
    return math.ldexp(1.0, e - 1) if m == 0.5 else math.ldexp(1.0, e)


def machine_variation(family: str) -> float:
    """Units a float of ``family`` may move between machines (0 for a byte-identical family)."""
    return MACHINE_VARIATION_BOUND[family] if PORTABILITY[family] == "bounded" else 0.0


def tolerance_rel(op: str, inputs: Mapping[str, Any] | None = None) -> float:
    """R of the tolerance |x - e| <= R * s of ``op``'s floats (a power of two).

    An answer as accurate as the reference is within 2 U 2^-52 S of it, and S <=
    SCALE_ESTIMATE_FACTOR s where s is estimated (the bounded families; the floats of the
    byte-identical ones have s = |e|, their S), so 2 U SCALE_ESTIMATE_FACTOR units suffice;
    R is also at least TOLERANCE_OVER_VARIATION machine variations of the family.
    """
    from .backend import OPERATIONS

    family = OPERATIONS[op].family
    factor = SCALE_ESTIMATE_FACTOR if PORTABILITY[family] == "bounded" else 1.0
    units = max(
        2.0 * bound(op, inputs) * factor, TOLERANCE_OVER_VARIATION * machine_variation(family)
    )
    return pow2_ceil(units) * EPS


# ------------------------------------------------------------------------- entry scales
def _is_float(value: Any) -> bool:
    return isinstance(value, float) or (isinstance(value, np.ndarray) and value.dtype == np.float64)


def float_leaves(value: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    """(path, leaf) for every float or float64 array inside dicts and lists, in order."""
    if isinstance(value, dict):
        return [x for k in value for x in float_leaves(value[k], path + (k,))]
    if isinstance(value, (list, tuple)):
        return [x for i, v in enumerate(value) for x in float_leaves(v, path + (i,))]
    return [(path, value)] if _is_float(value) else []


def _at(value: Any, path: tuple) -> Any:
    for p in path:
        value = value[p]
    return value


def mirror(value: Any, leaf: Callable[[tuple, Any], Any], path: tuple = ()) -> Any:
    """``value``'s structure with each float leaf replaced by ``leaf(path, x)``, others by None."""
    if isinstance(value, dict):
        return {k: mirror(v, leaf, path + (k,)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mirror(v, leaf, path + (i,)) for i, v in enumerate(value)]
    return leaf(path, value) if _is_float(value) else None


# Float arguments that decide counts rather than enter the arithmetic: never perturbed.
DISCRETE_ARGUMENTS = frozenset(
    {
        "fraction",
        "alpha",
        "density",
        "sparsity",
        "amount",
        "initial_sparsity",
        "final_sparsity",
        "target_density",
        "sparsities",
        "rate_multipliers",
    }
)


def _perturbed(value: Any, rng: np.random.Generator, sign: float) -> Any:
    """Every float x scaled by (1 + sign * PERTURBATION * r), r = +-1 drawn in order (arrays
    in C order; a symmetric matrix stays symmetric), except under DISCRETE_ARGUMENTS.
    Integers, strings and masks are not touched."""
    if isinstance(value, dict):
        return {
            k: value[k] if k in DISCRETE_ARGUMENTS else _perturbed(value[k], rng, sign)
            for k in value
        }
    if isinstance(value, list):
        return [_perturbed(v, rng, sign) for v in value]
    if isinstance(value, float):
        return value * (1.0 + sign * PERTURBATION * float(rng.integers(0, 2) * 2 - 1))
    if isinstance(value, np.ndarray) and value.dtype == np.float64:
        r = cast(np.ndarray, (rng.integers(0, 2, size=value.shape) * 2 - 1).astype(np.float64))
        if value.ndim == 2 and value.shape[0] == value.shape[1] and np.array_equal(value, value.T):
            r = np.triu(r) + np.triu(r, 1).T
        return value * (1.0 + sign * PERTURBATION * r)
    return value


def entry_scales(call: Callable[..., Any], inputs: dict[str, Any], expected: Any) -> Any:
    """The scale of every float of ``expected`` (the result of ``call(**inputs)``): a mirror.

    s = max(|e|, c) entry by entry, where c is the sensitivity of the entry to
    componentwise relative perturbations of the float inputs (arrays and scalars, except
    the DISCRETE_ARGUMENTS that only decide counts):

        c = max over r of min(|y(x * (1 + d r)) - e|, |y(x * (1 - d r)) - e|) / d

    with d = PERTURBATION and r = DIRECTIONS sign vectors drawn from
    ``Generator(PCG64(SEED + j))`` for j = 0, 1, ... (each array in input order, C
    order within it). c estimates |dy/dx| |x| summed over the inputs, the entry's
    absolute condition: a backward-stable computation errs by a few units of it.
    The smaller of the two one-sided differences keeps a kink (ReLU at exactly 0)
    from being read as a steep slope. A discrete part of the result (a mask, a
    count) that changes under the perturbation raises ValueError: the case decides
    something within 2^-24 of a tie.
    """
    floats = float_leaves(expected)
    sens = {path: np.zeros(np.shape(leaf)) for path, leaf in floats}
    for j in range(DIRECTIONS):
        results = []
        for sign in (1.0, -1.0):
            rng = np.random.Generator(np.random.PCG64(SEED + j))
            perturbed = _perturbed(inputs, rng, sign)
            results.append(call(**perturbed))
        for path, base in floats:
            diffs = [np.abs(np.asarray(_at(y, path), dtype=np.float64) - base) for y in results]
            sens[path] = np.maximum(sens[path], np.minimum(diffs[0], diffs[1]) / PERTURBATION)
        for y in results:
            changed = _discrete_changes(expected, y)
            if changed:
                raise ValueError(
                    f"a discrete output changes under a relative perturbation of "
                    f"{PERTURBATION:g}: {changed}"
                )

    def leaf(path: tuple, value: Any) -> Any:
        s = np.maximum(np.abs(np.asarray(value, dtype=np.float64)), sens[path])
        return float(s) if isinstance(value, float) else s

    return mirror(expected, leaf)


def schedule_scales(name: str, options: Mapping[str, Any], expected: Any) -> Any:
    """The scales of a schedule's targets: s = max(|e|, E), E the running error bound.

    A schedule's values and densities are specified as float64 expressions evaluated
    in a stated order (docs/schedules.md), so their scale is the running error bound
    of that expression (Wilkinson) rather than a sensitivity to the inputs: with the
    inputs exact (E = 0) and each operation adding the magnitude of its result,

        E(a +- b) = E(a) + E(b) + |a +- b|,   E(a b) = |a| E(b) + |b| E(a) + |a b|,
        E(a / b) = E(a) / |b| + |a| E(b) / b^2 + |a / b|,

    the float64 result is within 2^-53 E of the exact value. So the cubic target at
    j = 0 for s_i = 1e-300, s_f = 1 (0.0 in float64; exactly s_i over the reals)
    gets E = 2 and both answers pass, and a backend more accurate than the documented
    expression is never refused. ``tests/truth`` computes E exactly and checks it.
    """

    def add(
        a: tuple[float, float], b: tuple[float, float], sign: float = 1.0
    ) -> tuple[float, float]:
        v = a[0] + sign * b[0]
        return v, a[1] + b[1] + abs(v)

    def mul(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
        v = a[0] * b[0]
        return v, abs(a[0]) * b[1] + abs(b[0]) * a[1] + abs(v)

    one = (1.0, 0.0)
    if name == "geometric":
        alpha, d, values, densities = (float(options["alpha"]), 0.0), one, [], []
        for _ in range(int(options["rounds"])):
            d = mul(d, add(one, alpha, -1.0))
            values.append(alpha)
            densities.append(d)
    elif name == "one_shot":
        values = [(float(options["sparsity"]), 0.0)]
        densities = [add(one, values[0], -1.0)]
    else:
        n = int(options["n_steps"])
        if name == "constant":
            values = [(float(options["sparsity"]), 0.0)] * (n + 1)
        else:
            s_i = (float(options["initial_sparsity"]), 0.0)
            s_f = (float(options["final_sparsity"]), 0.0)
            values = []
            for j in range(n + 1):
                ratio = (j / n, abs(j / n))  # one division of exact integers
                if name == "cubic":
                    u = add(one, ratio, -1.0)
                    values.append(add(s_f, mul(add(s_i, s_f, -1.0), mul(mul(u, u), u))))
                else:
                    values.append(add(s_i, mul(add(s_f, s_i, -1.0), ratio)))
        densities = [add(one, v, -1.0) for v in values]
    bounds = {"values": [e for _, e in values], "densities": [e for _, e in densities]}

    def leaf(path: tuple, value: Any) -> Any:
        return np.maximum(
            np.abs(np.asarray(value, dtype=np.float64)),
            np.asarray(bounds[path[-1]], dtype=np.float64),
        )

    return mirror(expected, leaf)


def _discrete_changes(expected: Any, actual: Any, path: str = "") -> list[str]:
    if isinstance(expected, dict):
        return [
            c for k in expected for c in _discrete_changes(expected[k], actual[k], f"{path}[{k!r}]")
        ]
    if isinstance(expected, (list, tuple)):
        return [
            c
            for i, e in enumerate(expected)
            for c in _discrete_changes(e, actual[i], f"{path}[{i}]")
        ]
    if _is_float(expected):
        return []
    if isinstance(expected, np.ndarray):
        return [] if np.array_equal(expected, actual) else [path or "result"]
    return [] if expected == actual else [path or "result"]


# ------------------------------------------------------------------------- portability
SCALE_VARIATION = 2.0**-16  # relative; scales are estimates from perturbed runs
MARGIN_VARIATION = 2.0**-30  # absolute, on a relative gap


def regeneration_problems(committed: Any, fresh: Any) -> list[str]:
    """How a freshly generated golden directory differs from the committed one, beyond what
    ``PORTABILITY`` allows (empty when it conforms).

    byte-identical families: the same bytes. bounded families: the same JSON except that
    an expected float may move by MACHINE_VARIATION_BOUND units of its scale (an
    exactly compared one not at all), a scale by SCALE_VARIATION of itself, and a
    margin's relative gap by MARGIN_VARIATION. ``ids.txt`` must be identical;
    ``MANIFEST.txt`` is not compared (it follows the files).
    """
    import json
    from pathlib import Path

    from .golden import IDS, MANIFEST

    committed, fresh = Path(committed), Path(fresh)
    names = sorted(p.name for p in committed.iterdir() if p.is_file())
    fresh_names = sorted(p.name for p in fresh.iterdir() if p.is_file())
    problems = (
        [f"files differ: committed {names}, regenerated {fresh_names}"]
        if names != fresh_names
        else []
    )
    for name in names:
        if name == MANIFEST or name not in fresh_names:
            continue
        old, new = (committed / name).read_bytes(), (fresh / name).read_bytes()
        family = name[:-5] if name.endswith(".json") else None
        if old == new:
            continue
        if name == IDS or PORTABILITY.get(family or "") != "bounded":
            problems.append(f"{name}: regenerated bytes differ (this file must be byte-identical)")
            continue
        a, b = json.loads(old), json.loads(new)
        problems += [f"{name}: {p}" for p in _bounded_differences(a, b)]
    return problems


def _bounded_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    from .golden import decode

    head = sorted(k for k in set(old) | set(new) if k != "cases")
    problems = [f"header field {k!r} differs" for k in head if old.get(k) != new.get(k)]
    if [c["id"] for c in old["cases"]] != [c["id"] for c in new["cases"]]:
        return problems + ["the cases differ (ids or order)"]
    for a, b in zip(old["cases"], new["cases"]):
        where = f"case {a['id']}"
        for key in sorted(set(a) | set(b)):
            if key in ("expected", "tolerance", "margin"):
                continue
            if a.get(key) != b.get(key):
                problems.append(f"{where}: {key} differs")
        if set(a["expected"]) != set(b["expected"]) or set(a["tolerance"]) != set(b["tolerance"]):
            problems.append(f"{where}: outputs differ")
            continue
        for out in a["expected"]:
            tol_a, tol_b = decode(a["tolerance"][out]), decode(b["tolerance"][out])
            problems += _output_differences(
                decode(a["expected"][out]),
                decode(b["expected"][out]),
                tol_a,
                tol_b,
                f"{where} {out}",
                machine_variation(old["family"]),
            )
        problems += _margin_differences(a["margin"], b["margin"], where)
    return problems


def _output_differences(
    e_old: Any,
    e_new: Any,
    tol_old: dict[str, Any],
    tol_new: dict[str, Any],
    where: str,
    bound: float,
) -> list[str]:
    problems = []
    close = tol_old.get("kind") == "close"
    if {k: v for k, v in tol_old.items() if k != "scale"} != {
        k: v for k, v in tol_new.items() if k != "scale"
    }:
        problems.append(f"{where}: the tolerance differs (other than its scales)")
    old_leaves = dict(float_leaves(e_old))
    new_leaves = dict(float_leaves(e_new))
    if _discrete(e_old) != _discrete(e_new) or set(old_leaves) != set(new_leaves):
        return problems + [f"{where}: a discrete part differs (mask, count, support or structure)"]
    for path, x_old in old_leaves.items():
        x_new = new_leaves[path]
        x_old, x_new = np.asarray(x_old, dtype=np.float64), np.asarray(x_new, dtype=np.float64)
        if x_old.shape != x_new.shape:
            problems.append(f"{where} {list(path)}: shape differs")
            continue
        if not close:
            if not np.array_equal(x_old.view(np.int64), x_new.view(np.int64)):
                problems.append(f"{where} {list(path)}: an exactly compared float differs")
            continue
        s_old = np.asarray(_at(tol_old["scale"], path), dtype=np.float64)
        s_new = np.asarray(_at(tol_new["scale"], path), dtype=np.float64)
        if (x_old == 0).any() and not np.array_equal(
            np.signbit(x_old) & (x_old == 0), np.signbit(x_new) & (x_new == 0)
        ):
            problems.append(f"{where} {list(path)}: a signed zero differs")
        units = np.abs(x_new - x_old) / (EPS * np.where(s_old > 0, s_old, np.inf))
        units = np.where(x_new == x_old, 0.0, units)
        if np.any(units > bound):
            problems.append(
                f"{where} {list(path)}: moved {float(np.max(units)):.3g} units (bound {bound:g})"
            )
        if np.any(np.abs(s_new - s_old) > SCALE_VARIATION * s_old):
            problems.append(
                f"{where} {list(path)}: a scale moved by more than {SCALE_VARIATION:g} of itself"
            )
    return problems


def _discrete(value: Any) -> Any:
    """``value`` with every float leaf replaced by a placeholder, in a comparable form."""

    def leaf(path: tuple, x: Any) -> Any:
        return ("float", np.shape(x))

    m = mirror(value, leaf)

    def fill(v: Any, mv: Any) -> Any:
        if isinstance(v, dict):
            return {k: fill(v[k], mv[k]) for k in v}
        if isinstance(v, (list, tuple)):
            return [fill(x, y) for x, y in zip(v, mv)]
        if mv is not None:
            return mv
        if isinstance(v, np.ndarray):
            return (str(v.dtype), v.shape, v.tolist())
        return v

    return fill(value, m)


def _margin_differences(old: Any, new: Any, where: str) -> list[str]:
    from .golden import decode

    if old is None or new is None:
        return [] if old == new else [f"{where}: margin differs"]
    if old["quantity"] != new["quantity"]:
        return [f"{where}: margin quantity differs"]
    g_old, g_new = decode(old["relative_gap"]), decode(new["relative_gap"])
    if abs(g_old - g_new) > MARGIN_VARIATION:
        return [f"{where}: margin moved from {g_old:.6g} to {g_new:.6g}"]
    return []
