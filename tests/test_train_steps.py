"""The optimizer's rules (Nesterov, decoupled decay, where the mask goes), pruning with live
optimizer state, the random controls, and the claims of docs/training.md on every combination."""

import itertools

import numpy as np
import pytest

from refprune.lottery import random_masks_like
from refprune.mlp import MLP
from refprune.train import SGD, sgd_update, train, train_steps

SIZES = [3, 4, 3]


def _setup(seed=0, activation="tanh"):
    model = MLP(SIZES, activation, seed=seed)
    rng = np.random.Generator(np.random.PCG64(seed + 100))
    X = rng.standard_normal((6, 3))
    y = rng.integers(0, 3, 6)
    params = {n: p + 0.1 * rng.standard_normal(p.shape) for n, p in model.params.items()}
    m0 = {n: rng.random(p.shape) < 0.7 for n, p in params.items()}
    m1 = {n: m & (rng.random(m.shape) < 0.6) for n, m in m0.items()}
    back = {n: rng.standard_normal(p.shape) for n, p in params.items()}
    return params, m0, m1, back, X, y


def _run(params, masks, X, y, rates, prune_at=None, **kw):
    return train_steps(
        params,
        masks,
        X,
        y,
        activation="tanh",
        loss="cross_entropy",
        lr_schedule=np.asarray(rates, dtype=np.float64),
        prune_at=prune_at,
        **kw,
    )


# ----------------------------------------------------------------------------- the rule
def test_one_update_is_torch_sgd_by_hand():
    """Two updates of every optimizer on one array against the formula written out."""
    theta = np.array([1.0, -2.0, 0.5, 3.0])
    mask = np.array([True, True, True, False])
    g1, g2 = np.array([0.5, 0.25, -1.0, 7.0]), np.array([-0.5, 1.0, 2.0, 7.0])
    mu, wd, lr = 0.9, 0.1, 0.5
    for nesterov, decoupled in itertools.product([False, True], repeat=2):
        th, v = sgd_update(
            theta,
            g1,
            None,
            mask,
            lr,
            momentum=mu,
            nesterov=nesterov,
            weight_decay=wd,
            decoupled=decoupled,
        )
        th, v = sgd_update(
            th,
            g2,
            v,
            mask,
            lr,
            momentum=mu,
            nesterov=nesterov,
            weight_decay=wd,
            decoupled=decoupled,
        )
        t = theta.copy()
        buf = None
        for g in (g1, g2):
            d = g * mask + (0 if decoupled else wd * t)
            buf = d if buf is None else mu * buf + d
            u = d + mu * buf if nesterov else buf
            t = t - lr * (u + (wd * t if decoupled else 0)) * mask
        np.testing.assert_allclose(th, t, rtol=1e-15, atol=0)
        np.testing.assert_allclose(v, buf, rtol=1e-15, atol=0)
        assert th[3] == 3.0  # the caller zeroes pruned state under "update"


def test_nesterov_needs_momentum_and_mask_at_is_checked():
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        SGD(0.1, nesterov=True)
    with pytest.raises(ValueError, match="mask_at"):
        SGD(0.1, mask_at="gradient")  # an MLP holds 0.0 at pruned entries
    with pytest.raises(TypeError, match="decoupled must be a bool"):
        SGD(0.1, decoupled=1)


def test_default_sgd_is_unchanged_and_weights_convention_trains_the_same_network():
    params, m0, _, _, X, y = _setup(1)
    model = MLP(SIZES, "tanh", seed=1)
    model.load_state_dict({"params": params, "masks": m0})
    runs = {}
    for mask_at in ("update", "weights"):
        net = model.copy()
        train(
            net,
            X,
            y,
            epochs=5,
            lr=0.2,
            momentum=0.9,
            weight_decay=0.05,
            nesterov=True,
            mask_at=mask_at,
        )
        runs[mask_at] = net.params
        ref = _run(
            params,
            m0,
            X,
            y,
            [0.2] * 5,
            momentum=0.9,
            weight_decay=0.05,
            nesterov=True,
            mask_at=mask_at,
        )["params"][-1]
        for n in params:
            assert np.array_equal(net.params[n], ref[n])
            assert np.all(net.params[n][~m0[n]] == 0.0)
    for n in params:
        assert np.array_equal(runs["update"][n], runs["weights"][n])


def test_sgd_zeroes_the_velocity_of_weights_pruned_during_training():
    params, m0, m1, _, X, y = _setup(2)
    model = MLP(SIZES, "tanh", seed=2)
    model.load_state_dict({"params": params, "masks": m0})
    opt = SGD(0.1, momentum=0.9)
    train(model, X, y, epochs=2, optimizer=opt)
    model.set_masks(m1)
    train(model, X, y, epochs=1, optimizer=opt)
    for n in params:
        assert np.all(opt.velocity[n][~m1[n]] == 0.0)
        assert np.all(model.params[n][~m1[n]] == 0.0)


# ----------------------------------------------------------------------------- the claims
COMBINATIONS = list(
    itertools.product(
        [0.0, 0.9], [False, True], [0.0, 0.1], [False, True], ["none", "prune", "rewind"]
    )
)


@pytest.mark.parametrize("momentum,nesterov,wd,decoupled,event", COMBINATIONS)
def test_pruned_weights_never_come_back_and_the_conventions_agree(
    momentum, nesterov, wd, decoupled, event
):
    """docs/training.md, claims 1-3, on every combination of the options."""
    if nesterov and not momentum:
        return
    params, m0, m1, back, X, y = _setup(3)
    prune_at = {
        "none": None,
        "prune": [{"step": 2, "masks": m1, "rewind": None}],
        "rewind": [{"step": 2, "masks": m1, "rewind": back}],
    }[event]
    masks_at = [m0, m0, m0] + [m0 if event == "none" else m1] * 3
    kw = dict(momentum=momentum, nesterov=nesterov, weight_decay=wd, decoupled=decoupled)
    runs = {
        m: _run(params, m0, X, y, [0.5, 0.25, 0.5, 0.25, 0.1], prune_at, mask_at=m, **kw)
        for m in ("update", "weights", "gradient")
    }
    for mask_at in ("update", "weights"):
        for t, theta in enumerate(runs[mask_at]["params"]):
            for n, m in masks_at[t].items():
                assert np.all(theta[n][~m] == 0.0), (mask_at, t, n)
    for t, v in enumerate(runs["update"]["velocity"], start=1):
        for n, m in masks_at[t].items():
            assert np.all(v[n][~m] == 0.0), (t, n)
    for t in range(len(masks_at)):
        for n, m in masks_at[t].items():
            eff = [np.where(m, runs[k]["params"][t][n], 0.0) for k in runs]
            assert np.array_equal(eff[0], eff[1]) and np.array_equal(eff[0], eff[2]), (t, n)


def test_gradient_convention_keeps_moving_pruned_entries():
    params, m0, _, _, X, y = _setup(4)
    out = _run(params, m0, X, y, [0.5] * 3, momentum=0.9, weight_decay=0.1, mask_at="gradient")
    n = "layers.0.weight"
    pruned = ~m0[n]
    assert np.array_equal(out["params"][0][n][pruned], params[n][pruned])
    assert not np.array_equal(out["params"][-1][n][pruned], params[n][pruned])  # decayed


def test_train_steps_refuses_bad_events_and_rates():
    params, m0, m1, _, X, y = _setup(5)
    with pytest.raises(ValueError, match="must be nested"):
        _run(params, m1, X, y, [0.1] * 3, [{"step": 1, "masks": m0, "rewind": None}])
    with pytest.raises(ValueError, match="increasing"):
        _run(params, m0, X, y, [0.1] * 3, [{"step": 1, "masks": m1}, {"step": 1, "masks": m1}])
    with pytest.raises(ValueError, match=r"step'\] must be an integer"):
        _run(params, m0, X, y, [0.1] * 3, [{"step": 3, "masks": m1}])
    with pytest.raises(TypeError, match="prune_at must be a list"):
        _run(params, m0, X, y, [0.1] * 3, {1: m1})
    with pytest.raises(ValueError, match="rates >= 0"):
        _run(params, m0, X, y, [0.1, -0.1])
    with pytest.raises(ValueError, match="mask_at"):
        _run(params, m0, X, y, [0.1], mask_at="forward")
    before = {n: p.copy() for n, p in params.items()}
    _run(params, m0, X, y, [0.1] * 2, [{"step": 1, "masks": m1}], momentum=0.9)
    assert all(np.array_equal(before[n], params[n]) for n in params)


# ----------------------------------------------------------------------------- controls
def test_random_masks_within_are_nested_with_exact_counts_and_unchanged_without():
    rng = np.random.Generator(np.random.PCG64(6))
    within = {"a": rng.random((5, 6)) < 0.7, "b": rng.random(9) < 0.5}
    masks = {n: w & (rng.random(w.shape) < 0.5) for n, w in within.items()}
    out = random_masks_like(masks, ["a", "b"], 3, within=within)
    for n in masks:
        assert out[n].sum() == masks[n].sum() and not np.any(out[n] & ~within[n])
    # within=None is the draw run_imp has always made
    plain = random_masks_like(masks, ["a", "b"], 3)
    rng = np.random.Generator(np.random.PCG64(3))
    for n in ("a", "b"):
        expected = np.zeros(masks[n].size, bool)
        expected[rng.permutation(masks[n].size)[: masks[n].sum()]] = True
        assert np.array_equal(plain[n].ravel(), expected)
    with pytest.raises(ValueError, match="more than the"):
        random_masks_like(
            {"a": np.ones(4, bool)}, ["a"], 0, within={"a": np.eye(2, dtype=bool).ravel()}
        )


# ----------------------------------------------------------------------------- torch
def test_torch_prune_reparametrisation_is_the_gradient_convention():
    """torch.optim.SGD through torch.nn.utils.prune computes train_steps(mask_at="gradient"):
    weight_orig and its momentum buffer keep moving at pruned entries; pruning mid-training."""
    torch = pytest.importorskip("torch")
    from torch.nn.utils import prune

    params, m0, m1, _, X, y = _setup(7)
    out = _run(
        params,
        m0,
        X,
        y,
        [0.25] * 4,
        [{"step": 2, "masks": m1, "rewind": None}],
        momentum=0.9,
        nesterov=True,
        weight_decay=0.1,
        mask_at="gradient",
    )
    layers = [torch.nn.Linear(3, 4).double(), torch.nn.Linear(4, 3).double()]
    with torch.no_grad():
        for l, lin in enumerate(layers):
            lin.weight.copy_(torch.from_numpy(params[f"layers.{l}.weight"]))
            lin.bias.copy_(torch.from_numpy(params[f"layers.{l}.bias"]))
    opt = torch.optim.SGD(
        [p for lin in layers for p in lin.parameters()],
        lr=0.25,
        momentum=0.9,
        nesterov=True,
        weight_decay=0.1,
    )
    for l, lin in enumerate(layers):
        for kind in ("weight", "bias"):
            prune.custom_from_mask(lin, kind, torch.from_numpy(m0[f"layers.{l}.{kind}"]))
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    for t in range(4):
        if t == 2:
            for l, lin in enumerate(layers):
                for kind in ("weight", "bias"):
                    prune.custom_from_mask(lin, kind, torch.from_numpy(m1[f"layers.{l}.{kind}"]))
        opt.zero_grad()
        z = layers[1](torch.tanh(layers[0](Xt)))
        torch.nn.functional.cross_entropy(z, yt).backward()
        opt.step()
    for l, lin in enumerate(layers):
        for kind in ("weight", "bias"):
            got = getattr(lin, f"{kind}_orig").detach().numpy()
            np.testing.assert_allclose(
                got, out["params"][-1][f"layers.{l}.{kind}"], rtol=1e-12, atol=1e-14
            )
            buf = opt.state[getattr(lin, f"{kind}_orig")]["momentum_buffer"].numpy()
            np.testing.assert_allclose(
                buf, out["velocity"][-1][f"layers.{l}.{kind}"], rtol=1e-12, atol=1e-14
            )
