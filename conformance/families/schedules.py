"""Family "schedules": one-shot, geometric, cubic (Zhu and Gupta), linear and constant schedules,
their exact targets and the integer counts the mask selection produces."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from .. import strategies as cst
from . import CaseSpec, Family, Property, relative

ALGORITHM = """\
refprune.schedules. Every target is evaluated with float64 operations in the order written here.
geometric(alpha, rounds, start): kind relative, steps start .. start+rounds-1, values alpha each;
densities d_j = d_{j-1} * (1 - alpha) (d_0 = 1, products left to right).
one_shot(sparsity, step): kind absolute, one step, value sparsity.
cubic(s_i, s_f, t0, dt, n_steps) (Zhu and Gupta 2017): steps t0 + j dt for j = 0 .. n;
u = 1.0 - j / n; s_j = s_f + (s_i - s_f) * (u * u * u).
linear(s_i, s_f, t0, dt, n_steps): s_j = s_i + (s_f - s_i) * (j / n). constant(s, ...): s_j = s.
Absolute kinds: densities 1 - s_j.
alive_counts(n, rounding): relative k_j = k_{j-1} - fraction_to_count(f_j, k_{j-1}, rounding), k_0 = n;
absolute k_j = n - fraction_to_count(s_j, n, rounding).
rounds_to_density(target, alpha, n, rounding): the fewest S with d_S <= target (n null) or
k_S / n <= target (n given)."""

NOTES = {
    "geometric": "the geometric schedule (a fraction of the alive weights per round)",
    "one-shot": "a single pruning step",
    "cubic": "the cubic schedule of Zhu and Gupta (2017)",
    "linear": "a linear schedule",
    "constant": "a constant schedule (the mask is held after the first step)",
    "half-way": "some alpha * k_j or s_j * n lands on k + 1/2, where the rounding modes disagree",
    "tiny-n": "a tiny group: the counts stall when fraction_to_count(alpha, k) reaches 0",
    "rounding-floor": "counts with the floor rounding mode",
    "rounding-ceil": "counts with the ceil rounding mode",
    "article-example": "the density after S rounds is (1 - alpha)^S",
    "subnormal-start": "s_i = 1e-300, so s_0 = s_f + (s_i - s_f) rounds to 0.0",
    "float-product": "the target is decided by the float64 product, not the real number",
}


def _flags(name: str, n: int, rounding: str, sched: dict | None = None) -> list[str]:
    flags = [name.replace("_", "-")]
    if rounding != "round-half-even":
        flags.append(f"rounding-{rounding}")
    if n <= 5:
        flags.append("tiny-n")
    return flags


def _cases() -> list[CaseSpec]:
    out = []
    items: list[tuple[Any, ...]] = [
        (
            "geometric",
            {"alpha": 0.2, "rounds": 10, "start": 1},
            100,
            "round-half-even",
            "20% of the alive weights per round for 10 rounds: density 0.8^S",
            ["article-example"],
        ),
        (
            "geometric",
            {"alpha": 0.2, "rounds": 10, "start": 1},
            266_610,
            "round-half-even",
            "the 784-300-100-10 weight count",
            [],
        ),
        (
            "geometric",
            {"alpha": 0.5, "rounds": 6, "start": 0},
            21,
            "round-half-even",
            "halving an odd count: 10.5 -> 10, 5.5 -> 6",
            ["half-way"],
        ),
        (
            "geometric",
            {"alpha": 0.5, "rounds": 6, "start": 0},
            21,
            "floor",
            "halving with floor",
            ["half-way"],
        ),
        (
            "geometric",
            {"alpha": 0.5, "rounds": 6, "start": 0},
            21,
            "ceil",
            "halving with ceil",
            ["half-way"],
        ),
        (
            "geometric",
            {"alpha": 0.2, "rounds": 8, "start": 1},
            3,
            "round-half-even",
            "three weights: 0.2 * 3 = 0.6 -> 1, then 0.4 -> 0: the count stalls",
            [],
        ),
        (
            "geometric",
            {"alpha": 0.1, "rounds": 5, "start": 1},
            35,
            "round-half-even",
            "0.1 * 35 is exactly 3.5 in float64: half-even prunes 4",
            ["half-way"],
        ),
        (
            "geometric",
            {"alpha": 0.07, "rounds": 3, "start": 1},
            100,
            "ceil",
            "0.07 * 100 = 7.000000000000001 in float64: ceil prunes 8",
            ["float-product"],
        ),
        (
            "one_shot",
            {"sparsity": 0.9, "step": 0},
            1000,
            "round-half-even",
            "prune 90% at once",
            [],
        ),
        (
            "one_shot",
            {"sparsity": 0.85, "step": 3},
            10,
            "round-half-even",
            "0.85 * 10 = 8.5 in float64: half-even gives 8",
            ["half-way"],
        ),
        (
            "cubic",
            {"initial_sparsity": 0.0, "final_sparsity": 0.9, "t0": 0, "dt": 10, "n_steps": 10},
            1000,
            "round-half-even",
            "cubic 0 -> 0.9 over 10 intervals of 10 steps",
            [],
        ),
        (
            "cubic",
            {"initial_sparsity": 0.5, "final_sparsity": 0.75, "t0": 100, "dt": 25, "n_steps": 4},
            64,
            "ceil",
            "cubic 0.5 -> 0.75 starting at step 100",
            [],
        ),
        (
            "cubic",
            {"initial_sparsity": 1e-300, "final_sparsity": 1.0, "t0": 0, "dt": 1, "n_steps": 3},
            10,
            "round-half-even",
            "s_0 = 1 + (1e-300 - 1) is 0.0, not 1e-300",
            ["subnormal-start"],
        ),
        (
            "linear",
            {"initial_sparsity": 0.1, "final_sparsity": 0.8, "t0": 0, "dt": 5, "n_steps": 7},
            50,
            "round-half-even",
            "linear 0.1 -> 0.8",
            [],
        ),
        (
            "constant",
            {"sparsity": 0.6, "t0": 2, "dt": 3, "n_steps": 4},
            12,
            "floor",
            "constant 0.6: one prune, then held",
            [],
        ),
    ]
    for name, options, n, rounding, comment, extra in items:
        flags = _flags(name, n, rounding) + extra
        key = f"{name}/" + ",".join(f"{k}={v!r}" for k, v in options.items()) + f"/n={n}/{rounding}"
        out.append(
            CaseSpec(
                key,
                "schedule",
                comment,
                flags,
                {"name": name, "options": options, "n": n, "rounding": rounding},
            )
        )
    for target, alpha, n, rounding, comment, flags in [
        (0.1, 0.2, None, "round-half-even", "0.8^S <= 0.1 first at S = 11", ["geometric"]),
        (
            0.1,
            0.2,
            100,
            "round-half-even",
            "integer counts reach 10 alive at S = 11",
            ["geometric"],
        ),
        (0.5, 0.5, None, "round-half-even", "exactly one halving", ["geometric"]),
        (
            0.2,
            0.2,
            1000,
            "floor",
            "floor prunes fewer, so more rounds may be needed",
            ["geometric", "rounding-floor"],
        ),
        (
            0.01,
            0.2,
            266_610,
            "round-half-even",
            "the 784-300-100-10 weight count down to 1%",
            ["geometric"],
        ),
        (0.0, 1.0, None, "round-half-even", "alpha = 1 reaches 0 in one round", ["geometric"]),
    ]:
        out.append(
            CaseSpec(
                f"rounds_to_density/{target!r}/{alpha!r}/{n}/{rounding}",
                "rounds_to_density",
                comment,
                flags,
                {"target_density": target, "alpha": alpha, "n": n, "rounding": rounding},
            )
        )
    return out


def tolerance(op: str, expected: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """Targets within 2^-51 of themselves (formulas evaluated in other orders); counts and
    steps exact."""
    if op == "rounds_to_density":
        return {"kind": "exact"}
    return relative(expected, 2.0**-51)


# ----------------------------------------------------------------------------- properties
@st.composite
def _schedule_example(draw):
    name = draw(st.sampled_from(["geometric", "one_shot", "cubic", "linear", "constant"]))
    frac = cst.fractions()
    if name == "geometric":
        options = {
            "alpha": draw(frac),
            "rounds": draw(st.integers(0, 12)),
            "start": draw(st.integers(0, 3)),
        }
    elif name == "one_shot":
        options = {"sparsity": draw(frac), "step": draw(st.integers(0, 5))}
    elif name == "constant":
        options = {
            "sparsity": draw(frac),
            "t0": draw(st.integers(0, 5)),
            "dt": draw(st.integers(1, 5)),
            "n_steps": draw(st.integers(1, 12)),
        }
    else:
        a, b = sorted([draw(frac), draw(frac)])
        options = {
            "initial_sparsity": a,
            "final_sparsity": b,
            "t0": draw(st.integers(0, 5)),
            "dt": draw(st.integers(1, 5)),
            "n_steps": draw(st.integers(1, 12)),
        }
    return {
        "name": name,
        "options": options,
        "n": draw(st.integers(0, 10**6)),
        "rounding": draw(cst.roundings()),
    }


def _schedule_differential(c, ex):
    c.agree("schedule", **ex)


@st.composite
def _polynomial_example(draw):
    a, b = sorted(draw(st.lists(st.integers(0, 20), min_size=2, max_size=2, unique=True)))
    options = {
        "initial_sparsity": a / 20,
        "final_sparsity": b / 20,
        "t0": draw(st.integers(0, 5)),
        "dt": draw(st.integers(1, 5)),
        "n_steps": draw(st.integers(2, 12)),
    }
    return {"options": options, "n": draw(st.integers(1, 10**6)), "rounding": draw(cst.roundings())}


def _polynomial_differential(c, ex):
    """Cubic and linear between two different sparsities with at least two intervals, where
    the exponent and the span show in every intermediate target."""
    for name in ("cubic", "linear"):
        c.agree("schedule", name=name, **ex)


def _counts_consistent(c, ex):
    """Alive counts never increase, stay in [0, n], and follow fraction_to_count exactly."""
    out = c.call("schedule", **ex)
    k = np.asarray(out["alive_counts"])
    n = ex["n"]
    c.require(
        np.all(k >= 0) and np.all(k <= n), lambda: f"alive counts {k.tolist()} outside [0, {n}]"
    )
    c.require(np.all(np.diff(k) <= 0), lambda: f"alive counts increase: {k.tolist()}")
    prev = n
    for j, v in enumerate(np.asarray(out["values"])):
        if out["kind"] == "relative":
            want = prev - c.ref(
                "fraction_to_count", fraction=float(v), n=int(prev), rounding=ex["rounding"]
            )
        else:
            want = n - c.ref("fraction_to_count", fraction=float(v), n=n, rounding=ex["rounding"])
        c.require(
            int(k[j]) == want, lambda: f"step {j}: {int(k[j])} alive, fraction_to_count says {want}"
        )
        prev = int(k[j])


@st.composite
def _geometric_example(draw):
    alpha = draw(st.floats(0.01, 1.0))
    return {
        "name": "geometric",
        "options": {"alpha": alpha, "rounds": draw(st.integers(0, 30)), "start": 1},
        "n": draw(st.integers(1, 10**6)),
        "rounding": "round-half-even",
    }


def _geometric_bound(c, ex):
    """With round-half-even, |k_S / n - (1 - alpha)^S| <= 1 / (2 alpha n) (plus float64 rounding)."""
    out = c.call("schedule", **ex)
    alpha, n = ex["options"]["alpha"], ex["n"]
    bound = 1.0 / (2.0 * alpha * n) + 1e-12
    k = np.asarray(out["alive_counts"], dtype=np.float64)
    exact = (1.0 - alpha) ** np.arange(1, k.size + 1)
    err = np.abs(k / n - exact)
    c.require(
        np.all(err <= bound),
        lambda: f"|k_S/n - (1-alpha)^S| = {err.max():.3g} exceeds 1/(2 alpha n) = {bound:.3g}",
    )


@st.composite
def _rounds_example(draw):
    alpha = draw(st.floats(0.05, 1.0))
    n = draw(st.one_of(st.none(), st.integers(1, 10**5)))
    target = draw(st.floats(0.01, 1.0))
    return {"target_density": target, "alpha": alpha, "n": n, "rounding": "round-half-even"}


def _rounds_differential(c, ex):
    try:
        c.ref("rounds_to_density", **ex)
    except ValueError:
        return  # unreachable target: nothing to compare
    c.agree("rounds_to_density", **ex)


@st.composite
def _reached_exactly_example(draw):
    alpha = draw(st.sampled_from([0.5, 0.25, 0.2, 0.1, 0.75]))
    return alpha, draw(st.integers(0, 8)), draw(st.one_of(st.none(), st.integers(1, 1000)))


def _rounds_reached_exactly(c, ex):
    """The target is the density (or k_S / n) after S rounds itself: "reached" includes equal."""
    alpha, S, n = ex
    if S == 0:
        target = 1.0
    else:
        sched = c.ref(
            "schedule",
            name="geometric",
            options={"alpha": alpha, "rounds": S, "start": 1},
            n=1 if n is None else n,
            rounding="round-half-even",
        )
        target = float(sched["densities"][-1]) if n is None else int(sched["alive_counts"][-1]) / n
    c.agree(
        "rounds_to_density", target_density=target, alpha=alpha, n=n, rounding="round-half-even"
    )


PROPERTIES = [
    Property(
        "schedules/differential",
        ("schedule",),
        "every schedule equals the reference's",
        _schedule_example(),
        _schedule_differential,
    ),
    Property(
        "schedules/polynomial-differential",
        ("schedule",),
        "cubic and linear schedules between two different sparsities equal the reference's",
        _polynomial_example(),
        _polynomial_differential,
    ),
    Property(
        "schedules/counts-follow-rounding",
        ("schedule",),
        "alive counts stay in [0, n], never increase, and follow fraction_to_count",
        _schedule_example(),
        _counts_consistent,
    ),
    Property(
        "schedules/geometric-error-bound",
        ("schedule",),
        "integer geometric densities stay within 1/(2 alpha n) of (1 - alpha)^S",
        _geometric_example(),
        _geometric_bound,
    ),
    Property(
        "schedules/rounds-to-density-differential",
        ("rounds_to_density",),
        "rounds_to_density equals the reference's",
        _rounds_example(),
        _rounds_differential,
    ),
    Property(
        "schedules/rounds-to-density-reached-exactly",
        ("rounds_to_density",),
        "rounds_to_density equals the reference's when the target is a density the schedule "
        "reaches exactly (d_S <= target counts as reached)",
        _reached_exactly_example(),
        _rounds_reached_exactly,
    ),
]

FAMILY = Family(
    name="schedules",
    algorithm=ALGORITHM,
    notes=NOTES,
    cases=_cases,
    tolerance=tolerance,
    properties=PROPERTIES,
)
