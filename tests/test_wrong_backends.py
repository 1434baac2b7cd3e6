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
the OBD recursion, the saliency rules, the polynomial schedules and
rounds_to_density, ISTA, an IMP round, a full IMP run, the mask rules of the
tfmot, torch, open-lth and shrinkbench profiles) are run through the
same checks with their defect switched off and must pass them, so each wrong
backend differs from the reference by its one defect.
"""

from __future__ import annotations

import pytest

from conformance.backend import FAMILIES, ReferenceBackend
from conformance.families import load_families
from tests.wrong_backends import CATALOGUE, WrongBackend, changed_operations
from tests.wrong_backends import curvature as wrong_curvature
from tests.wrong_backends import lottery as wrong_lottery
from tests.wrong_backends import masks as wrong_masks
from tests.wrong_backends import profiles as wrong_profiles
from tests.wrong_backends import schedules as wrong_schedules
from tests.wrong_backends import scores as wrong_scores
from tests.wrong_backends import sparse_approx as wrong_sparse
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
    assert kill.golden, (
        f"{name}: no golden case of the {kill.family} family catches it "
        f"({kill.golden_run} cases of {list(kill.operations)} run): add one where "
        "this alternative disagrees with the reference at the decision"
    )
    assert kill.properties, (
        f"{name}: no property of the {kill.family} family catches it "
        f"({kill.properties_run} run): strengthen or add one"
    )


# ------------------------------------------------------------------ one defect each
class _SelectionUndamaged(wrong_masks.SelectionBackend):
    """Mask selection through the hooks, all left at the reference's rule."""


class _UnitsUndamaged(wrong_masks._UnitsBackend):
    """Structured pruning rebuilt, every switch off."""


class _OBDUndamaged(WrongBackend):
    def hessian_diag(self, *, params, X, y, activation, loss, method):
        if method != "obd":
            return super().hessian_diag(
                params=params, X=X, y=y, activation=activation, loss=loss, method=method
            )
        return wrong_curvature.obd_diagonal(params, X, y, activation, loss, sigma2=True)


class _RulesUndamaged(wrong_scores._RulesBackend):
    """Every rebuilt saliency rule, every switch off."""

    rules = ("taylor1", "obd", "taylor2", "taylor2_abs", "grasp", "synflow")


class _SchedulesUndamaged(WrongBackend):
    def schedule(self, *, name, options, n, rounding):
        result = super().schedule(name=name, options=options, n=n, rounding=rounding)
        if name not in ("cubic", "linear"):
            return result
        return wrong_schedules.polynomial_rebuilt(name, options, result, n, rounding)

    def rounds_to_density(self, *, target_density, alpha, n, rounding):
        super().rounds_to_density(
            target_density=target_density, alpha=alpha, n=n, rounding=rounding
        )
        return wrong_schedules.rounds_rebuilt(target_density, alpha, n, rounding)


class _ISTAUndamaged(WrongBackend):
    def ista(self, *, A, y, lam, step, n_iter):
        return wrong_sparse.ista_rebuilt(A, y, lam, step, n_iter)


class _IMPRoundUndamaged(WrongBackend):
    def imp_round(
        self, *, trained, rewind_params, masks, fraction, scope, rate_multipliers, rounding
    ):
        return wrong_lottery.imp_round_rebuilt(
            trained, rewind_params, masks, fraction, scope, rate_multipliers, rounding
        )


class _IMPUndamaged(wrong_lottery._IMPBackend):
    """The rebuilt IMP loop: momentum reset, update masked, snapshot after K updates."""


UNDAMAGED = [
    (_SelectionUndamaged, "masks"),
    (_UnitsUndamaged, "masks"),
    (_OBDUndamaged, "curvature"),
    (_RulesUndamaged, "scores"),
    (_SchedulesUndamaged, "schedules"),
    (_ISTAUndamaged, "sparse_approx"),
    (_IMPRoundUndamaged, "lottery"),
    (_IMPUndamaged, "lottery"),
    # each library's rule rebuilt, claiming its profile, every hook at its default
    (wrong_profiles._TfmotBackend, "profiles"),
    (wrong_profiles._TorchBackend, "profiles"),
    (wrong_profiles._OpenLthBackend, "profiles"),
    (wrong_profiles._ShrinkbenchBackend, "profiles"),
]


@pytest.mark.parametrize(
    "backend, family", UNDAMAGED, ids=lambda x: x if isinstance(x, str) else x.__name__.strip("_")
)
def test_rebuilt_computations_pass_the_checks_with_their_defect_switched_off(
    backend, family, table
):
    """Each rebuilt computation, with no defect, passes every check that calls what it changes
    (so a wrong backend built on it differs from the reference by its one defect)."""
    cls = type(backend.__name__, (backend,), {"family": family})
    kill = table.kill(backend.__name__, cls, max_examples=10)
    assert kill.golden_run and kill.properties_run
    assert not kill.golden and not kill.properties, (kill.golden, kill.properties)
