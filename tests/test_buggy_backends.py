"""The suite catches wrong implementations: every backend of ``conformance.buggy`` fails it.

Each wrong backend is run through the runner's Python API on the golden cases
and the properties of the family expected to catch it (few examples per
property: the defects are not rare), and must fail, with one of the checks it
names among the failures. The computations the catalogue rebuilds (mask
selection, structured pruning, the OBD recursion, an IMP round, a full IMP
run) are run through the same suite with their defect switched off and must
pass it, so each wrong backend differs from the reference by its one defect.
"""

from __future__ import annotations

import pytest

from conformance import buggy
from conformance.backend import FAMILIES, OPERATIONS, ReferenceBackend
from conformance.buggy import CATALOGUE
from conformance.families import load_families
from conformance.runner import run

MAX_EXAMPLES = 5


def failing_checks(report) -> set[str]:
    """Names of the failed checks: property names, and "golden:<op>" for golden cases."""
    return {f"golden:{r.op}" if r.kind == "golden" else r.id for r in report.failures}


def test_the_catalogue_has_at_least_fifteen_wrong_backends():
    assert len(CATALOGUE) >= 15


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_each_wrong_backend_documents_its_defect_and_its_catcher(name):
    cls = CATALOGUE[name]
    families = load_families()
    assert issubclass(cls, ReferenceBackend) and cls is not ReferenceBackend
    assert cls.__doc__ and "Models" in cls.__doc__, "the docstring names the real-world mistake"
    assert cls.family in FAMILIES and cls.family in families
    assert cls.caught_by, "at least one check is expected to catch it"
    properties = {p.name for p in families[cls.family].properties}
    for check in cls.caught_by:
        if check.startswith("golden:"):
            assert OPERATIONS[check[len("golden:"):]].family == cls.family, check
        else:
            assert check in properties, check


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_each_wrong_backend_fails_the_suite(name):
    cls = CATALOGUE[name]
    # whether a property fails is what counts here, not its smallest example: no shrinking
    report = run(cls(), families=[cls.family], max_examples=MAX_EXAMPLES, shrink=False)
    failed = failing_checks(report)
    assert not report.ok, f"{name} passed every check of the {cls.family} family"
    caught = failed & set(cls.caught_by)
    assert caught, f"{name} failed {sorted(failed)}, none of the expected {list(cls.caught_by)}"


# ------------------------------------------------------------------ one defect each
class _SelectionUndamaged(buggy.SelectionBackend):
    """Mask selection through the hooks, both left at the reference's rule."""


class _UnitsUndamaged(buggy.WrongBackend):
    def prune_units(self, *, params, masks, fraction, norm, rounding):
        return buggy._prune_units(params, masks, fraction, norm, rounding, with_bias=False)


class _OBDUndamaged(buggy.WrongBackend):
    def hessian_diag(self, *, params, X, y, activation, loss, method):
        if method != "obd":
            return super().hessian_diag(params=params, X=X, y=y, activation=activation, loss=loss,
                                        method=method)
        return buggy.obd_diagonal(params, X, y, activation, loss, sigma2=True)


class _IMPRoundUndamaged(buggy.WrongBackend):
    def imp_round(self, *, trained, rewind_params, masks, fraction, scope, rate_multipliers, rounding):
        return buggy.imp_round_rebuilt(trained, rewind_params, masks, fraction, scope, rate_multipliers, rounding)


class _IMPUndamaged(buggy._IMPBackend):
    """The rebuilt IMP loop: momentum reset, update masked, snapshot after K updates."""


@pytest.mark.parametrize("backend, family", [
    (_SelectionUndamaged, "masks"), (_UnitsUndamaged, "masks"), (_OBDUndamaged, "curvature"),
    (_IMPRoundUndamaged, "lottery"), (_IMPUndamaged, "lottery"),
], ids=lambda x: x if isinstance(x, str) else x.__name__.strip("_"))
def test_rebuilt_computations_pass_the_suite_with_their_defect_switched_off(backend, family):
    report = run(backend(), families=[family], max_examples=10)
    assert report.ok, "\n".join(f"{r.id}: {r.detail}" for r in report.failures)
    assert any(r.status == "passed" for r in report.results)
