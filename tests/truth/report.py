"""Print the reference's worst error against the high-precision truth, per family and operation.

    python -m tests.truth.report [--family NAME ...] [--golden DIR]

For every golden case with a truth (``tests.truth.check``), every float the
case expects is compared with its exact value: the table gives, per operation,
the worst distance in ulps to the correctly rounded truth, the worst error in
units of 2**-52 * max(|t|, S) (S the entry's exact sensitivity scale) and of
2**-52 * s (s the scale the golden file stores, "exact" where the output is
compared exactly), the bound U of ``conformance.accuracy``, and the case ids
where they occur.
Discrete outputs computed from floats (OBS and SynFlow masks) are compared with
the decisions on the exact values. Operations without a truth are listed with
the reason. Exit status 1 if any entry exceeds its bound or any decision differs.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from mpmath import mpf

from conformance import accuracy
from conformance.accuracy import bound

from . import cases, check

FAMILIES = (
    "curvature",
    "scores",
    "masks",
    "profiles",
    "schedules",
    "sparse_approx",
    "lottery",
    "sparse_execution",
    "training",
    "controls",
)

#: Operations whose outputs have no truth here, and why.
EXCLUDED: dict[str, str] = {
    "fraction_to_count": "an integer: rounding of the float64 product, by definition",
    "keep_top_k": "a mask: exact comparisons of the given floats",
    "select_masks": "masks: exact comparisons of the given floats",
    "prune_units": "masks: comparisons of float64 norms (their margins are recorded)",
    "n_m_mask": "a mask: exact comparisons of the given floats",
    "profile_mask": "masks: exact comparisons, under each library's convention",
    "rounds_to_density": "an integer defined by float64 products, by definition",
    "imp": "full-batch SGD on a non-convex loss: no a-priori bound on error growth",
    "scores:random": "draws from NumPy's PCG64 stream, not a computation",
    "train_steps": "full-batch SGD on a non-convex loss: no a-priori bound on error growth",
    "random_masks": "a mask: a permutation drawn from NumPy's PCG64 stream",
    "reinit": "draws from NumPy's PCG64 stream times a correctly rounded standard deviation",
}


def exclusion(case: cases.Case) -> str | None:
    if case.op == "scores" and case.inputs.get("rule") == "random":
        return EXCLUDED["scores:random"]
    return EXCLUDED.get(case.op)


def unit(entry: check.Entry) -> float:
    """|y - t| in units of 2**-52 * max(|t|, S)."""
    scale = max(abs(entry.truth), entry.scale)
    if scale == 0:
        return 0.0 if entry.error == 0 else float("inf")
    return float(entry.error / (mpf(2) ** -52 * scale))


@dataclass
class Row:
    family: str
    op: str
    cases: int = 0
    entries: int = 0
    worst_ulps: int = 0
    worst_ulps_case: int | None = None
    worst_unit: float = 0.0
    worst_unit_case: int | None = None
    worst_stored: float | None = None
    worst_stored_case: int | None = None
    bound: float = 0.0
    mismatches: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, result: check.CaseResult, U: float, seconds: float) -> None:
        self.cases += 1
        self.entries += len(result.entries)
        self.bound = max(self.bound, U)
        self.seconds += seconds
        cid = result.case.id
        for e in result.entries:
            if e.ulps > self.worst_ulps or self.worst_ulps_case is None:
                self.worst_ulps, self.worst_ulps_case = e.ulps, cid
            u = unit(e)
            if u > self.worst_unit or self.worst_unit_case is None:
                self.worst_unit, self.worst_unit_case = u, cid
        for e, scale in zip(result.entries, stored_scales(result.case), strict=True):
            if scale is None:
                continue
            u = stored_unit(e, scale)
            if self.worst_stored is None or u > self.worst_stored:
                self.worst_stored, self.worst_stored_case = u, cid
        self.mismatches += [f"case {cid}: {m}" for m in result.mismatches]


def stored_unit(entry: check.Entry, scale: float) -> float:
    """|y - t| in units of 2**-52 * s, s the scale stored in the golden file."""
    if scale == 0:
        return 0.0 if entry.error == 0 else float("inf")
    return float(entry.error / (mpf(2) ** -52 * scale))


def case_bound(case: cases.Case, result: check.CaseResult) -> float:
    """U of the case's operation (0 for an operation with no float output)."""
    return bound(case.op, case.inputs) if result.entries else 0.0


def failures(result: check.CaseResult) -> list[str]:
    """Entries beyond the case's bound, decisions that differ from the exact ones, and
    stored tolerance scales that do not fit the exact conditioning (``scale_problems``)."""
    U = case_bound(result.case, result)
    out = [
        f"case {result.case.id} {e.path}: error {unit(e):.3g} > U = {U} "
        f"(reference {e.reference!r}, truth {mpf(e.truth)}, {e.ulps} ulps, "
        f"kappa {e.kappa:.3g})"
        for e in result.entries
        if unit(e) > U
    ]
    out += [
        f"case {result.case.id}: {m} differs from the exact decision" for m in result.mismatches
    ]
    return out + scale_problems(result, U)


#: Operations whose stored scales estimate S: the inputs' sensitivity alone, or for
#: schedules the running error bound (``accuracy.schedule_scales``).
SAME_SCALE = (
    "loss_value",
    "gradient",
    "hvp",
    "full_hessian",
    "hessian_diag",
    "hutchinson_diag",
    "scores",
    "sparse_approx_exact",
    "schedule",
)


def stored_scales(case: cases.Case) -> list[float | None]:
    """The golden file's per-entry scale s of every compared float (None: exact or no scale)."""
    out: list[float | None] = []
    for name, value in case.expected.items():
        tol = (case.tolerance or {}).get(name) or {}
        n = sum(1 for _ in check.leaves({name: value}, {name: value}))
        if tol.get("kind") == "close" and tol.get("scale") is not None:
            out += [s for _, s, _ in check.leaves({name: tol["scale"]}, {name: tol["scale"]})]
        else:
            out += [None] * n
    return out


def scale_problems(result: check.CaseResult, U: float) -> list[str]:
    """Where the file stores per-entry scales s (tolerance |x - e| <= R s):

    (B1) |y - t| <= U K 2^-52 s, K = accuracy.SCALE_ESTIMATE_FACTOR in the families
         whose scales are estimated (1 where s = |e|): the premise from which the
         tolerances are derived, for every operation;
    (B2) max(|t|, S) <= K s for the operations whose s estimates S (``SAME_SCALE``,
         OBS excepted): s does not underestimate the conditioning;
    (B3) s <= 2 max(|t|, S) + 2^-30 max s: s does not inflate a tolerance beyond it.
    """
    case = result.case
    scales = stored_scales(case)
    if all(s is None for s in scales):
        return []
    K = getattr(accuracy, "SCALE_ESTIMATE_FACTOR", 16.0)
    K_family = K if accuracy.PORTABILITY.get(case.family) == "bounded" else 1.0
    estimated = case.op in SAME_SCALE and case.inputs.get("rule") != "obs"
    largest = max((s for s in scales if s is not None), default=0.0)
    out = []
    for e, s in zip(result.entries, scales, strict=True):
        if s is None:
            continue
        where = f"case {case.id} {e.path}"
        if e.error > U * K_family * mpf(2) ** -52 * s:
            out.append(
                f"{where}: error {float(e.error):.3g} > U K 2^-52 s "
                f"(U = {U}, K = {K_family:g}, s = {s:.3g})"
            )
        if estimated:
            exact = max(abs(e.truth), e.scale)
            if exact > K_family * s * (1 + 2.0**-30):
                out.append(
                    f"{where}: stored scale {s:.3g} < max(|t|, S) / K = "
                    f"{float(exact) / K_family:.3g}"
                )
            if s > 2 * exact + 2.0**-30 * largest:
                out.append(
                    f"{where}: stored scale {s:.3g} > 2 max(|t|, S) = {2 * float(exact):.3g}"
                )
    return out


def run(
    families: tuple[str, ...] = FAMILIES, directory: Path = cases.GOLDEN
) -> tuple[list[Row], list[tuple[str, str, int, str]], list[str]]:
    rows: dict[tuple[str, str], Row] = {}
    skipped: dict[tuple[str, str], list[int]] = {}
    problems: list[str] = []
    for family in families:
        for case in cases.load(family, directory):
            reason = exclusion(case)
            if reason is not None or not check.supported(case):
                key = (family, case.op if reason != EXCLUDED["scores:random"] else "scores:random")
                skipped.setdefault(key, []).append(case.id)
                if reason is None:
                    problems.append(
                        f"case {case.id}: op {case.op!r} has no truth and no stated reason"
                    )
                continue
            start = time.process_time()
            result = check.check_case(case)
            U = case_bound(case, result)
            op = case.op if case.op != "scores" else f"scores:{case.inputs['rule']}"
            rows.setdefault((family, op), Row(family, op)).add(
                result, U, time.process_time() - start
            )
            problems += failures(result)
    excluded = [(f, op, len(ids), EXCLUDED.get(op, "no truth")) for (f, op), ids in skipped.items()]
    return list(rows.values()), excluded, problems


def table(rows: list[Row]) -> str:
    header = (
        "| family | output | cases | floats | worst ulps (case) | worst error / "
        "(2^-52 max(abs(t), S)) (case) | worst error / (2^-52 s) (case) | bound U |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if not r.entries:
            lines.append(
                f"| {r.family} | {r.op} | {r.cases} | 0 | masks only: "
                f"{'the exact decisions' if not r.mismatches else 'DIFFERENT'} | | | |"
            )
            continue
        stored = (
            "exact" if r.worst_stored is None else f"{r.worst_stored:.2f} ({r.worst_stored_case})"
        )
        lines.append(
            f"| {r.family} | {r.op} | {r.cases} | {r.entries} | "
            f"{r.worst_ulps} ({r.worst_ulps_case}) | {r.worst_unit:.2f} "
            f"({r.worst_unit_case}) | {stored} | {r.bound:g} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.truth.report", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--family",
        action="append",
        choices=FAMILIES,
        help="only this family (repeatable; default all)",
    )
    parser.add_argument(
        "--golden",
        type=Path,
        default=cases.GOLDEN,
        help="directory of the golden files (default the package's)",
    )
    args = parser.parse_args(argv)
    start = time.process_time()
    rows, excluded, problems = run(tuple(args.family or FAMILIES), args.golden)
    print(table(rows))
    print()
    for family, op, n, reason in excluded:
        print(f"not compared: {family} {op} ({n} cases): {reason}")
    print(
        f"\n{sum(r.cases for r in rows)} cases, {sum(r.entries for r in rows)} floats, "
        f"{time.process_time() - start:.1f} s of CPU"
    )
    for p in problems:
        print("FAIL", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
