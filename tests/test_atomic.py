"""Every public function that changes a model changes all of it or none of it.

For each one, an error is provoked at the latest point it can arrive (a read-only parameter
array after writeable ones, a bad entry for the last parameter, a bad rate at a late step, a
callback that fails halfway), and the model must be exactly as before: the same array objects
holding the same bits, the same masks, the same optimizer state.
"""

from __future__ import annotations

import numpy as np
import pytest

from refprune import SparseSGD
from refprune.lottery import PruneSpec, imp_round, rewind_weights
from refprune.masks import apply_masks, prune, prune_count, prune_n_m, prune_units
from refprune.mlp import MLP
from refprune.rescoring import obs_prune, synflow_prune
from refprune.schedules import Schedule, one_shot
from refprune.scores import compute_scores
from refprune.train import SGD, train

X = np.random.default_rng(0).standard_normal((7, 4))
Y = np.array([0, 1, 2, 0, 1, 2, 0])


def net(seed=0, sizes=(4, 6, 5, 3)):
    return MLP(list(sizes), "relu", seed=seed)


def snapshot(model):
    return (
        {n: (id(p), p.copy(), p.flags.writeable) for n, p in model.params.items()},
        {n: m.copy() for n, m in model.masks.items()},
        dict(model._pruned),
    )


def assert_unchanged(model, snap):
    params, masks, pruned = snap
    for n, p in model.params.items():
        ident, values, writeable = params[n]
        assert id(p) == ident and p.flags.writeable == writeable, n
        assert p.tobytes() == values.tobytes(), f"{n} changed"
        assert np.array_equal(model.masks[n], masks[n]), f"mask of {n} changed"
    assert model._pruned == pruned


def last_read_only(model):
    """The last weight matrix read-only: every earlier parameter would be written first."""
    name = model.weight_names()[-1]
    model.params[name].flags.writeable = False
    return name


def magnitudes(model):
    return {n: np.abs(p) for n, p in model.params.items()}


# ----------------------------------------------------------------- read-only parameters
@pytest.mark.parametrize(
    "step",
    [
        lambda m: prune(m, magnitudes(m), 0.5),
        lambda m: prune(m, magnitudes(m), 0.5, scope="global"),
        lambda m: prune_count(m, magnitudes(m), 10, scope="global"),
        lambda m: prune_units(m, 0.5),
        lambda m: prune_n_m(m, magnitudes(m), 1, 1),
        lambda m: apply_masks(
            m,
            {n: ~np.eye(*k.shape, dtype=bool) for n, k in m.masks.items() if n.endswith("weight")},
        ),
        lambda m: PruneSpec(names=tuple(m.weight_names()), scope="global").apply(
            m, magnitudes(m), one_shot(0.5), 0
        ),
        lambda m: m.set_masks({n: np.zeros(k.shape, bool) for n, k in m.masks.items()}),
        lambda m: SGD(0.1, momentum=0.9).step(m, m.loss_and_grads(X, Y)[1]),
        lambda m: train(m, X, Y, epochs=1),
    ],
    ids=[
        "prune",
        "prune-global",
        "prune_count",
        "prune_units",
        "prune_n_m",
        "apply_masks",
        "prune_to_counts",
        "set_masks",
        "SGD.step",
        "train",
    ],
)
def test_read_only_parameter_is_refused_before_anything_changes(step):
    m = net()
    name = last_read_only(m)
    snap = snapshot(m)
    with pytest.raises(ValueError, match=rf"params\['{name}'\] is read-only"):
        step(m)
    assert_unchanged(m, snap)


def test_prune_on_a_read_only_model_used_to_leave_pruned_weights_non_zero():
    m = net()
    m.params["layers.2.weight"].flags.writeable = False
    with pytest.raises(ValueError):
        prune(m, magnitudes(m), 0.5)
    for n, p in m.params.items():  # every pruned entry is still 0.0: the masks did not move
        assert np.all(p[~m.masks[n]] == 0.0)
    assert all(m.masks[n].all() for n in m.masks)


@pytest.mark.parametrize(
    "run",
    [
        lambda m: obs_prune(m, X, Y, 3, damping=10.0),
        lambda m: synflow_prune(m, 0.5, iterations=3),
        lambda m: imp_round(m, m.state_dict()["params"], 0.5),
    ],
    ids=["obs_prune", "synflow_prune", "imp_round"],
)
def test_functions_that_return_a_new_model_work_on_a_read_only_one_and_leave_it(run):
    m = net()
    for p in m.params.values():
        p.flags.writeable = False
    snap = snapshot(m)
    run(m)
    assert_unchanged(m, snap)


def test_rewinding_replaces_read_only_arrays_and_leaves_the_source_alone():
    m = net()
    prune(m, magnitudes(m), 0.5)
    for p in m.params.values():
        p.flags.writeable = False
    source = net(seed=1).state_dict()["params"]
    kept = {n: p.copy() for n, p in source.items()}
    rewind_weights(m, source)
    for n, p in m.params.items():
        assert p.flags.writeable and np.array_equal(p, np.where(m.masks[n], source[n], 0.0))
        assert np.array_equal(source[n], kept[n])


# ----------------------------------------------------------------- bad input arriving late
def test_prune_with_a_bad_last_score_changes_nothing():
    m = net()
    s = magnitudes(m)
    s["layers.2.weight"] = s["layers.2.weight"].copy()
    s["layers.2.weight"][-1, -1] = np.nan
    snap = snapshot(m)
    with pytest.raises(ValueError, match="finite"):
        prune(m, s, 0.5)
    assert_unchanged(m, snap)


def test_prune_with_a_bad_last_multiplier_changes_nothing():
    m = net()
    snap = snapshot(m)
    with pytest.raises(ValueError, match="rate_multipliers"):
        prune(
            m,
            magnitudes(m),
            0.5,
            rate_multipliers={"layers.0.weight": 1.0, "layers.2.weight": float("inf")},
        )
    assert_unchanged(m, snap)


def test_prune_to_counts_with_scores_missing_for_a_later_group_changes_nothing():
    m = net()
    spec = PruneSpec(
        names=tuple(m.weight_names()), scope="global", rate_multipliers={"layers.2.weight": 0.5}
    )
    s = magnitudes(m)
    del s["layers.2.weight"]
    snap = snapshot(m)
    with pytest.raises(KeyError):
        spec.apply(m, s, one_shot(0.5), 0)
    assert_unchanged(m, snap)


def test_apply_masks_refuses_to_revive_and_changes_nothing():
    m = net()
    prune(m, magnitudes(m), 0.5)
    snap = snapshot(m)
    new = {"layers.0.weight": np.zeros((6, 4), bool), "layers.2.weight": np.ones((3, 5), bool)}
    with pytest.raises(ValueError, match="revives"):
        apply_masks(m, new, allow_collapse=True)
    assert_unchanged(m, snap)


def test_load_state_dict_with_a_bad_last_mask_changes_nothing():
    m = net()
    state = net(seed=1).state_dict()
    state["masks"]["layers.2.bias"] = np.ones(4, bool)  # wrong shape, last entry
    snap = snapshot(m)
    with pytest.raises(ValueError, match="shape"):
        m.load_state_dict(state)
    assert_unchanged(m, snap)


def test_obs_prune_bad_damping_and_count_change_nothing():
    m = net()
    snap = snapshot(m)
    for kwargs in (dict(damping=float("nan")), dict(damping=-1.0)):
        with pytest.raises(ValueError, match="damping"):
            obs_prune(m, X, Y, 2, **kwargs)
    with pytest.raises(ValueError, match="n_remove"):
        obs_prune(m, X, Y, 10_000, damping=10.0)
    assert_unchanged(m, snap)


@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda g: g.pop("layers.2.bias"), "missing"),
        (lambda g: g.__setitem__("layers.2.bias", np.full(3, np.nan)), "finite"),
        (lambda g: g.__setitem__("layers.2.bias", np.zeros(4)), "shape"),
        (lambda g: g.__setitem__("extra", np.zeros(1)), "unexpected"),
    ],
)
def test_sgd_step_with_a_bad_last_gradient_changes_nothing(bad, match):
    m = net()
    opt = SGD(0.1, momentum=0.9)
    opt.step(m, m.loss_and_grads(X, Y)[1])  # a velocity to keep
    velocity = {n: v.copy() for n, v in opt.velocity.items()}
    grads = m.loss_and_grads(X, Y)[1]
    bad(grads)
    snap = snapshot(m)
    with pytest.raises(ValueError, match=match):
        opt.step(m, grads)
    assert_unchanged(m, snap)
    assert all(np.array_equal(opt.velocity[n], velocity[n]) for n in velocity)


@pytest.mark.parametrize("lr", [float("nan"), float("inf"), 0.0, -1.0])
def test_sgd_step_with_a_bad_rate_changes_nothing(lr):
    m = net()
    snap = snapshot(m)
    with pytest.raises(ValueError, match="lr"):
        SGD(0.1).step(m, m.loss_and_grads(X, Y)[1], lr)
    assert_unchanged(m, snap)


def test_train_with_a_bad_late_rate_refuses_before_the_first_update():
    m = net()
    seen = []
    snap = snapshot(m)
    with pytest.raises(ValueError, match=r"lr_schedule\(5\)"):
        train(
            m,
            X,
            Y,
            epochs=8,
            lr_schedule=lambda t: float("nan") if t == 5 else 0.1,
            callback=lambda t, model: seen.append(t),
        )
    assert_unchanged(m, snap) and not seen


def test_train_restores_model_optimizer_and_generator_when_a_callback_fails():
    m = net()
    prune(m, magnitudes(m), 0.3)
    opt = SGD(0.1, momentum=0.9)
    opt.step(m, m.loss_and_grads(X, Y)[1])
    velocity = {n: v.copy() for n, v in opt.velocity.items()}
    rng = np.random.default_rng(5)
    state = rng.bit_generator.state
    snap = snapshot(m)

    def callback(t, model):
        if t == 3:
            prune(model, magnitudes(model), 0.5)  # changes masks too
        if t == 5:
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        train(m, X, Y, epochs=4, batch_size=3, optimizer=opt, seed=rng, callback=callback)
    assert_unchanged(m, snap)
    assert opt.velocity.keys() == velocity.keys()
    assert all(np.array_equal(opt.velocity[n], velocity[n]) for n in velocity)
    assert rng.bit_generator.state == state


# ----------------------------------------------------------------- non-finite hyperparameters
@pytest.mark.parametrize(
    "make",
    [
        lambda v: MLP([4, 3, 2], sigma=v),
        lambda v: MLP([4, 3, 2], init="normal", sigma=v),
        lambda v: SGD(v),
        lambda v: SGD(0.1, momentum=v),
        lambda v: SGD(0.1, weight_decay=v),
        lambda v: obs_prune(net(), X, Y, 1, damping=v),
        lambda v: compute_scores("obs", net(), X, Y, damping=v),
        lambda v: SparseSGD(net(), lr=v),
        lambda v: SparseSGD(net(), momentum=v),
        lambda v: one_shot(v),
        lambda v: Schedule("custom", "absolute", (0,), (v,)),
        lambda v: Schedule("custom", "relative", (0,), (v,)),
    ],
    ids=[
        "sigma-kaiming",
        "sigma-normal",
        "lr",
        "momentum",
        "weight_decay",
        "damping",
        "obs-damping",
        "sparse-lr",
        "sparse-momentum",
        "sparsity",
        "schedule-absolute",
        "schedule-relative",
    ],
)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_hyperparameters_are_refused(make, value):
    with pytest.raises(ValueError):
        make(value)


def test_sigma_is_refused_where_it_is_not_used():
    with pytest.raises(ValueError, match="sigma is used only by init='normal'"):
        MLP([4, 3, 2], sigma=0.5)


# ----------------------------------------------------------------- labels are required to learn
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_steps_without_labels_are_refused(loss):
    m = MLP([4, 3, 2], loss=loss, seed=0)
    snap = snapshot(m)
    for call in (
        lambda: SGD(0.1).step(m, m.loss_and_grads(X, None)[1]),
        lambda: m.loss_value(X, None),
        lambda: m.accuracy(X, None),
        lambda: train(m, X, None),
    ):
        with pytest.raises(TypeError, match="y must be given"):
            call()
    assert_unchanged(m, snap)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_sparse_sgd_step_without_labels_is_refused_and_changes_nothing(loss):
    m = MLP([4, 3, 2], loss=loss, seed=0)
    sgd = SparseSGD(m, lr=0.1, momentum=0.9)
    before = sgd.to_model().state_dict()
    with pytest.raises(TypeError, match="y must be given"):
        sgd.step(X, None)
    after = sgd.to_model().state_dict()
    assert all(np.array_equal(before["params"][n], after["params"][n]) for n in before["params"])
