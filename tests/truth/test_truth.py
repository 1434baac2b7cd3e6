"""The reference's golden floats against their high-precision truth, within conformance.accuracy.

Each golden float y with exact value t must satisfy |y - t| <= U * 2**-52 * max(|t|, S)
(``conformance.accuracy``, ``tests/truth/check.py``); discrete outputs computed from
floats must equal the decisions taken on the exact values. The other tests check
the checker: it fails a wrong value, every golden case is compared or excluded
with a reason, and the truths agree with a second route to the same numbers.
"""

from __future__ import annotations

import copy
import math

import mpmath
import pytest
from mpmath import mp, mpf

from conformance.accuracy import REFERENCE_ERROR_BOUND

from . import cases, check, curvature, report, scores
from .network import Net

COMPARED = ("curvature", "scores", "schedules", "sparse_approx", "lottery", "sparse_execution")


def _cases(family: str) -> list[cases.Case]:
    return [c for c in cases.load(family) if report.exclusion(c) is None]


@pytest.mark.parametrize("family", COMPARED)
def test_reference_within_bound_of_truth(family: str) -> None:
    problems = []
    for case in _cases(family):
        problems += report.failures(check.check_case(case))
    assert not problems, "\n".join(problems)


def test_every_golden_case_is_compared_or_excluded_with_a_reason() -> None:
    for family in report.FAMILIES:
        for case in cases.load(family):
            assert report.exclusion(case) is not None or check.supported(case), (
                f"{family} case {case.id}: op {case.op!r} has no truth and no stated reason"
            )
            if report.exclusion(case) is None and case.op in check.TRUTHS:
                has_floats = any(True for _ in check.leaves(case.expected, case.expected))
                assert not has_floats or case.op in REFERENCE_ERROR_BOUND, (
                    f"{case.op} has float outputs but no bound in conformance.accuracy"
                )


def _case(family: str, cid: int) -> cases.Case:
    return next(c for c in cases.load(family) if c.id == cid)


def _flag_case(family: str, op: str, flag: str) -> cases.Case:
    return next(c for c in cases.load(family) if c.op == op and flag in c.flags)


def _with_entry(case: cases.Case, path: str, value: float) -> cases.Case:
    """A copy of the case whose expected float at ``path`` is ``value``."""
    out = copy.deepcopy(case)
    node = out.expected
    keys, index = path[: path.rindex("[")].split("/"), int(path[path.rindex("[") + 1 : -1])
    for key in keys:
        node = node[key]
    node.data[index] = value
    return out


def test_a_tiny_truth_answered_with_zero_fails() -> None:
    """The saturated-softmax defect: a diagonal entry of ~1e-43 stored as 0.0."""
    case = _flag_case("curvature", "hessian_diag", "large-logits")
    result = check.check_case(case)
    tiny = min((e for e in result.entries if e.truth != 0), key=lambda e: abs(e.truth))
    assert abs(tiny.truth) < 1e-30
    assert not report.failures(result)
    broken = check.check_case(_with_entry(case, tiny.path, 0.0))
    assert any(tiny.path in f for f in report.failures(broken))


def test_a_few_ulps_off_a_well_conditioned_entry_fails() -> None:
    case = _flag_case("curvature", "gradient", "relu")
    result = check.check_case(case)
    entry = min((e for e in result.entries if e.truth != 0), key=lambda e: e.kappa)
    U = REFERENCE_ERROR_BOUND[case.op]
    moved = float(entry.rounded)
    for _ in range(int(4 * U * max(1.0, entry.kappa)) + 2):
        moved = math.nextafter(moved, math.inf)
    broken = check.check_case(_with_entry(case, entry.path, moved))
    assert any(entry.path in f for f in report.failures(broken))


def test_a_schedule_off_its_documented_expression_fails() -> None:
    case = next(c for c in cases.load("schedules") if c.op == "schedule")
    broken = _with_entry(
        case,
        "schedule/densities[0]",
        case.expected["schedule"].get("densities").data[0] * (1 + 2.0**-40),
    )
    assert report.failures(check.check_case(broken))


def test_a_different_obs_decision_is_reported() -> None:
    case = next(c for c in cases.load("scores") if c.op == "obs_prune")
    masks = case.expected["pruned"]["masks"]["layers.0.weight"]
    broken = copy.deepcopy(case)
    flipped = broken.expected["pruned"]["masks"]["layers.0.weight"]
    first_pruned = masks.data.index(False)
    flipped.data[first_pruned] = True
    flipped.data[masks.data.index(True)] = False
    with mp.workdps(30):
        truth = scores.truth(case.op, case.inputs)
    assert not check.discrete_mismatches(case.expected, truth)
    assert check.discrete_mismatches(broken.expected, truth)


# ------------------------------------------------------------------ second routes
def _net_and_batch(case: cases.Case) -> tuple[Net, list, list, str]:
    net = Net(case.inputs["params"], case.inputs.get("masks"), case.inputs["activation"])
    X, y = curvature._batch(case.inputs)
    return net, X, y, case.inputs["loss"]


def test_jet_hessian_matches_differences_of_the_jet_gradient() -> None:
    case = _flag_case("curvature", "full_hessian", "tanh")
    net, X, y, loss = _net_and_batch(case)
    with mp.workdps(60):
        H = curvature.hessian(net, X, y, loss)
        h = mpf(10) ** -25
        for j in range(net.P):
            moved = copy.copy(net)
            moved.theta = list(net.theta)
            moved.theta[j] += h
            column = [
                (a - b) / h
                for a, b in zip(
                    curvature.gradient(moved, X, y, loss), curvature.gradient(net, X, y, loss)
                )
            ]
            assert all(
                abs(c - H[i][j]) <= mpf(10) ** -20 * (1 + abs(H[i][j]))
                for i, c in enumerate(column)
            )


def test_obs_closed_form_matches_one_at_a_time_updates() -> None:
    """w' = w_R + A_RR^-1 A_RQ w_Q equals Hassibi and Stork's sequential update and downdate."""
    case = max(
        (c for c in cases.load("scores") if c.op == "obs_prune"), key=lambda c: c.inputs["n_remove"]
    )
    with mp.workdps(50):
        _, _, A, w, removed = scores._obs_setup(case.inputs)
        _, closed, _ = scores.obs_after(A, w, removed)
        Hinv, x, free = mpmath.inverse(A), w.copy(), list(range(A.rows))
        for q in removed:
            k = free.index(q)
            step = x[q] / Hinv[k, k]
            for a, p in enumerate(free):
                x[p] -= step * Hinv[a, k]
            x[q] = mpf(0)
            Hinv = Hinv - Hinv[:, k] * Hinv[k, :] / Hinv[k, k]
            keep = [a for a in range(len(free)) if a != k]
            Hinv = mpmath.matrix([[Hinv[a, b] for b in keep] for a in keep])
            free.pop(k)
        R = [a for a in range(A.rows) if a not in removed]
        assert all(abs(x[a] - closed[i]) <= mpf(10) ** -35 for i, a in enumerate(R))


def test_probe_share_of_the_scale_matches_differences() -> None:
    case = min(
        (c for c in cases.load("curvature") if c.op == "hutchinson_diag"),
        key=lambda c: c.inputs["probes"].size,
    )
    with mp.workdps(40):
        closed = check.truth_values(curvature.probe_scale(case.inputs), case.expected)
        base = check.truth_values(curvature.truth(case.op, case.inputs), case.expected)
        h = mpf(10) ** -15
        total = [mpf(0)] * len(base)
        for path in check.float_inputs(case.inputs):
            if path[0] != "probes":
                continue
            moved = check.truth_values(
                curvature.truth(case.op, check._scaled(case.inputs, path, 1 + h)), case.expected
            )
            total = [t + abs(m - b) / h for t, m, b in zip(total, moved, base)]
        assert all(abs(a - b) <= mpf(10) ** -10 * (1 + abs(b)) for a, b in zip(total, closed))


def _with_scales(case: cases.Case, result: check.CaseResult, factor: float) -> cases.Case:
    """The case with a stored per-entry scale of ``factor`` max(|t|, S) on its one output."""
    out = copy.deepcopy(case)
    ((name, value),) = case.expected.items()
    scales = iter(float(factor * max(abs(e.truth), e.scale)) for e in result.entries)

    def mirror(v):
        if isinstance(v, dict):
            return {k: mirror(x) for k, x in v.items()}
        return cases.Array("float64", v.shape, [next(scales) for _ in v.data])

    out.tolerance = {name: {"kind": "close", "rel": 2.0**-40, "scale": mirror(value)}}
    return out


def test_stored_scales_are_checked_against_the_exact_conditioning() -> None:
    case = _flag_case("curvature", "gradient", "tanh")
    result = check.check_case(case)
    assert not report.failures(result)
    for factor, fails in [(1.0, False), (1 / 64, True), (64.0, True)]:
        scaled = _with_scales(case, result, factor)
        problems = report.scale_problems(
            check.CaseResult(scaled, result.digits, result.entries, []),
            REFERENCE_ERROR_BOUND[case.op],
        )
        assert bool(problems) == fails, (factor, problems[:2])
