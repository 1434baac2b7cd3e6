"""The kill table: every wrong backend of ``tests.wrong_backends`` fails the golden cases of its
family on their own, and the properties of its family on their own.

A backend that runs only the golden cases (``--golden-only``, or a backend in
another language that a maintainer checks against the files alone) and one
that runs only the properties must each be caught. Each wrong backend is run
in this process, on its family only and by the checks that call an operation
it changes (the others see the reference and pass), the properties at the CI
example count with a fixed seed and no shrinking. The table (each defect, the
golden case ids and the properties that catch it) is printed at the end of
the session and written to ``.pytest_cache/d/wrong_backends/kill_table.txt``;
``python -m tests.wrong_backends`` prints it too.

The computations the catalogue rebuilds (mask selection, structured pruning,
the OBD recursion, an IMP round, a full IMP run) are run through the suite with
their defect switched off and must pass it, so each wrong backend differs from
the reference by its one defect.
"""

from __future__ import annotations

import pytest

from conformance.backend import FAMILIES, ReferenceBackend
from conformance.families import load_families
from conformance.runner import run
from tests.wrong_backends import CATALOGUE, WrongBackend, changed_operations
from tests.wrong_backends import curvature as wrong_curvature
from tests.wrong_backends import lottery as wrong_lottery
from tests.wrong_backends import masks as wrong_masks
from tests.wrong_backends._table import KILLS, Table

MIN_CATALOGUE = 40


@pytest.fixture(scope="module")
def table():
    return Table()


def test_the_catalogue_has_enough_distinct_wrong_backends():
    assert len(CATALOGUE) >= MIN_CATALOGUE
    assert len(set(CATALOGUE.values())) == len(CATALOGUE)


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_each_wrong_backend_documents_its_defect(name):
    cls = CATALOGUE[name]
    assert issubclass(cls, WrongBackend) and cls is not ReferenceBackend
    assert cls.__doc__ and "Models" in cls.__doc__, "the docstring names the real-world mistake"
    assert cls.family in FAMILIES and cls.family in load_families()
    assert changed_operations(cls), "it changes at least one operation"


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_each_wrong_backend_is_caught_by_goldens_alone_and_by_properties_alone(name, table):
    kill = table.kill(name, CATALOGUE[name])
    KILLS[name] = kill
    assert kill.golden, (f"{name}: no golden case of the {kill.family} family catches it "
                         f"({kill.golden_run} cases of {list(kill.operations)} run): add one where "
                         "this alternative disagrees with the reference at the decision")
    assert kill.properties, (f"{name}: no property of the {kill.family} family catches it "
                             f"({kill.properties_run} run): strengthen or add one")


# ------------------------------------------------------------------ one defect each
class _SelectionUndamaged(wrong_masks.SelectionBackend):
    """Mask selection through the hooks, both left at the reference's rule."""


class _UnitsUndamaged(WrongBackend):
    def prune_units(self, *, params, masks, fraction, norm, rounding):
        return wrong_masks._prune_units(params, masks, fraction, norm, rounding, with_bias=False)


class _OBDUndamaged(WrongBackend):
    def hessian_diag(self, *, params, X, y, activation, loss, method):
        if method != "obd":
            return super().hessian_diag(params=params, X=X, y=y, activation=activation, loss=loss,
                                        method=method)
        return wrong_curvature.obd_diagonal(params, X, y, activation, loss, sigma2=True)


class _IMPRoundUndamaged(WrongBackend):
    def imp_round(self, *, trained, rewind_params, masks, fraction, scope, rate_multipliers,
                  rounding):
        return wrong_lottery.imp_round_rebuilt(trained, rewind_params, masks, fraction, scope,
                                               rate_multipliers, rounding)


class _IMPUndamaged(wrong_lottery._IMPBackend):
    """The rebuilt IMP loop: momentum reset, update masked, snapshot after K updates."""


@pytest.mark.parametrize("backend, family", [
    (_SelectionUndamaged, "masks"), (_UnitsUndamaged, "masks"), (_OBDUndamaged, "curvature"),
    (_IMPRoundUndamaged, "lottery"), (_IMPUndamaged, "lottery"),
], ids=lambda x: x if isinstance(x, str) else x.__name__.strip("_"))
def test_rebuilt_computations_pass_the_suite_with_their_defect_switched_off(backend, family):
    report = run(backend(), families=[family], max_examples=10)
    assert report.ok, "\n".join(f"{r.id}: {r.detail}" for r in report.failures)
    assert any(r.status == "passed" for r in report.results)
