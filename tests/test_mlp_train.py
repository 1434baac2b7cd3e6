"""The masked MLP, its training, the data sets, and argument checking."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refprune.data import (
    load_digits,
    make_blobs,
    make_teacher_student,
    random_labels,
    train_test_split,
)
from refprune.mlp import MLP
from refprune.rng import make_rng
from refprune.train import SGD, train


def blobs():
    return make_blobs(400, n_features=4, n_classes=3, center_scale=6.0, spread=0.5, seed=1)


def test_small_mlp_separates_blobs():
    X, y = blobs()
    model = MLP([4, 16, 3], "relu", seed=0)
    hist = train(model, X, y, epochs=20, lr=0.1, batch_size=32, momentum=0.9, seed=0)
    assert hist.accuracy[-1] >= 0.95


def random_mask(shape, density, seed):
    return np.random.default_rng(seed).random(shape) < density


@pytest.mark.parametrize("momentum,weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.9, 1e-3)])
def test_masked_weights_stay_exactly_zero(momentum, weight_decay):
    X, y = blobs()
    model = MLP([4, 16, 8, 3], "tanh", seed=3)
    masks = {n: random_mask(p.shape, 0.5, i) for i, (n, p) in enumerate(model.params.items())}
    model.set_masks(masks)
    seen_nonzero_grad = []
    train(
        model,
        X,
        y,
        epochs=5,
        lr=0.05,
        batch_size=50,
        momentum=momentum,
        weight_decay=weight_decay,
        callback=lambda t, m: seen_nonzero_grad.append(
            any(np.any(g[~m.masks[n]]) for n, g in m.loss_and_grads(X, y)[1].items())
        ),
    )
    for name, p in model.params.items():
        pruned = p[~model.masks[name]]
        assert np.all(pruned == 0.0) and not np.any(np.signbit(pruned)), name
    assert not any(seen_nonzero_grad)


def test_set_mask_zeroes_and_masks_are_read_only():
    model = MLP([3, 4, 2], seed=0)
    m = np.ones((4, 3), dtype=bool)
    m[0, 0] = False
    model.set_mask("layers.0.weight", m)
    assert model.params["layers.0.weight"][0, 0] == 0.0
    with pytest.raises(ValueError):
        model.masks["layers.0.weight"][0, 1] = False
    m[1, 1] = False  # the model keeps its own copy
    assert model.masks["layers.0.weight"][1, 1]


def test_a_kept_weight_may_be_zero_and_stays_alive():
    model = MLP([3, 2], seed=0)
    model.params["layers.0.weight"][0, 0] = 0.0
    assert model.masks["layers.0.weight"][0, 0] and model.density() == 1.0


def test_same_seed_same_bits_different_seed_different_weights():
    X, y = blobs()
    runs = []
    for _ in range(2):
        model = MLP([4, 8, 3], seed=5)
        train(model, X, y, epochs=3, lr=0.1, batch_size=16, momentum=0.9, seed=11)
        runs.append(model.state_dict()["params"])
    for name in runs[0]:
        assert runs[0][name].tobytes() == runs[1][name].tobytes()
    a, b = MLP([4, 8, 3], seed=5), MLP([4, 8, 3], seed=6)
    assert not np.array_equal(a.params["layers.0.weight"], b.params["layers.0.weight"])


def test_documented_init_draw_order():
    model = MLP([5, 4, 3], init="kaiming", seed=42)
    rng = np.random.Generator(np.random.PCG64(42))
    w0 = np.sqrt(2 / 5) * rng.standard_normal((4, 5))
    w1 = np.sqrt(2 / 4) * rng.standard_normal((3, 4))
    assert np.array_equal(model.params["layers.0.weight"], w0)
    assert np.array_equal(model.params["layers.1.weight"], w1)
    g = MLP([5, 4], init="glorot", seed=1)
    assert np.array_equal(
        g.params["layers.0.weight"], np.sqrt(2 / 9) * make_rng(1).standard_normal((4, 5))
    )
    n = MLP([5, 4], init="normal", sigma=0.3, seed=1)
    assert np.array_equal(n.params["layers.0.weight"], 0.3 * make_rng(1).standard_normal((4, 5)))


def test_state_dict_is_a_deep_copy_and_restores():
    model = MLP([3, 4, 2], seed=0)
    state = model.state_dict()
    model.params["layers.0.weight"] += 1.0
    assert not np.array_equal(state["params"]["layers.0.weight"], model.params["layers.0.weight"])
    model.load_state_dict(state)
    assert np.array_equal(state["params"]["layers.0.weight"], model.params["layers.0.weight"])
    model.params["layers.0.weight"] += 1.0
    assert not np.array_equal(state["params"]["layers.0.weight"], model.params["layers.0.weight"])


def test_lr_schedule_and_start_step():
    X, y = blobs()
    seen = []
    model = MLP([4, 3], seed=0)
    train(model, X, y, epochs=2, lr_schedule=lambda t: seen.append(t) or 0.1, start_step=7)
    assert seen == [7, 8]


def test_data_sets_are_seeded_and_shaped():
    X1, y1, t1 = make_teacher_student(50, (6, 8, 3), density=0.25, seed=2)
    X2, y2, t2 = make_teacher_student(50, (6, 8, 3), density=0.25, seed=2)
    assert np.array_equal(X1, X2) and np.array_equal(y1, y2)
    assert t1.masks["layers.0.weight"].sum() == round(0.25 * 48)
    Xr, yr, _ = make_teacher_student(20, (6, 2), task="regression", noise=0.1, seed=0)
    assert yr.shape == (20, 2) and yr.dtype == np.float64
    yrand = random_labels(y1, 3, seed=0)
    assert yrand.shape == y1.shape and set(np.unique(yrand)) <= {0, 1, 2}
    Xa, Xb, ya, yb = train_test_split(X1, y1, test_fraction=0.2, seed=0)
    assert len(Xb) == 10 and len(Xa) == 40 and len(ya) == 40


def test_digits_loader_or_clear_error():
    try:
        import sklearn  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="experiments"):
            load_digits()
        return
    X, y = load_digits()
    assert X.shape == (1797, 64) and y.shape == (1797,) and X.max() <= 1.0


# ---------------------------------------------------------------- bad input
X_OK = np.zeros((4, 3))
Y_OK = np.array([0, 1, 0, 1])


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(sizes=[3]), ValueError, "sizes"),
        (dict(sizes=[3, 0]), ValueError, "sizes"),
        (dict(sizes=[3, 2.5]), TypeError, "sizes"),
        (dict(sizes=[3, 2], activation="swish"), ValueError, "activation"),
        (dict(sizes=[3, 2], init="he_uniform"), ValueError, "init"),
        (dict(sizes=[3, 2], init="normal"), ValueError, "sigma"),
        (dict(sizes=[3, 2], loss="hinge"), ValueError, "loss"),
        (dict(sizes=[3, 2], seed=-1), ValueError, "seed"),
        (dict(sizes=[3, 2], seed=None), TypeError, "seed"),
    ],
)
def test_bad_model_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        MLP(**kwargs)


@pytest.mark.parametrize(
    "X,y,exc,match",
    [
        (np.zeros((4, 5)), Y_OK, ValueError, "X must have 3 columns"),
        (np.zeros((0, 3)), Y_OK[:0], ValueError, "X must not be empty"),
        (np.full((4, 3), np.nan), Y_OK, ValueError, "X must be finite"),
        (np.full((4, 3), np.inf), Y_OK, ValueError, "X must be finite"),
        (np.zeros((4, 3), dtype=int), Y_OK, TypeError, "X must be a floating"),
        (X_OK, np.array([0, 1, 0]), ValueError, "y must have one label per row"),
        (X_OK, np.array([0, 1, 0, 2]), ValueError, r"y must hold class labels in \[0, 2\)"),
        (X_OK, np.array([0.0, 1, 0, 1]), TypeError, "y must be an integer"),
    ],
)
def test_bad_training_data(X, y, exc, match):
    model = MLP([3, 2], seed=0)
    before = model.state_dict()["params"]
    X_before = X.copy()
    with pytest.raises(exc, match=match):
        train(model, X, y, epochs=1)
    assert all(np.array_equal(before[n], p) for n, p in model.params.items())
    np.testing.assert_array_equal(X, X_before)


@pytest.mark.parametrize("copy", [True, False])
def test_check_inputs_finite_check_and_copy(copy):
    model = MLP([3, 2], seed=0)
    # entries finite near the largest float (their sum overflows): accepted as they are
    big = np.full((4, 3), 1e308)
    X, _ = model.check_inputs(big, copy=copy)
    assert (X is big) == (not copy) and np.array_equal(X, big)
    for bad in (np.inf, -np.inf, np.nan):
        X = np.full((4, 3), 1e308)
        X[2, 1] = bad
        with pytest.raises(ValueError, match="X must be finite"):
            model.check_inputs(X, copy=copy)
    # inf and -inf together: caught
    X = np.zeros((4, 3))
    X[0, 0], X[1, 1] = np.inf, -np.inf
    with pytest.raises(ValueError, match="X must be finite"):
        model.check_inputs(X, copy=copy)
    # another float dtype is converted, so never the caller's array
    X32 = np.zeros((4, 3), dtype=np.float32)
    assert model.check_inputs(X32, copy=copy)[0].dtype == np.float64


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(lr=0.0), ValueError, "lr"),
        (dict(lr=-1.0), ValueError, "lr"),
        (dict(lr=float("nan")), ValueError, "lr"),
        (dict(epochs=0), ValueError, "epochs"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(momentum=1.0), ValueError, "momentum"),
        (dict(weight_decay=-0.1), ValueError, "weight_decay"),
        (dict(lr_schedule=lambda t: float("nan")), ValueError, "lr_schedule"),
    ],
)
def test_bad_training_arguments(kwargs, exc, match):
    model = MLP([3, 2], seed=0)
    with pytest.raises(exc, match=match):
        train(model, X_OK, Y_OK, **kwargs)


def test_nan_weights_are_refused_on_load():
    model = MLP([3, 2], seed=0)
    state = model.state_dict()
    state["params"]["layers.0.weight"][0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        model.load_state_dict(state)
    assert np.all(np.isfinite(model.params["layers.0.weight"]))


def test_bad_masks():
    model = MLP([3, 2], seed=0)
    with pytest.raises(ValueError, match="shape"):
        model.set_mask("layers.0.weight", np.ones((3, 2), dtype=bool))
    with pytest.raises(TypeError, match="boolean"):
        model.set_mask("layers.0.weight", np.ones((2, 3)))
    with pytest.raises(ValueError, match="parameter"):
        model.set_mask("layers.9.weight", np.ones((2, 3), dtype=bool))


def test_mse_targets_checked():
    model = MLP([3, 2], loss="mse", seed=0)
    with pytest.raises(ValueError, match="y must have shape"):
        model.loss_value(X_OK, np.zeros((4, 3)))
    with pytest.raises(TypeError, match="y must be a floating"):
        model.loss_value(X_OK, np.zeros((4, 2), dtype=int))


@given(st.integers(1, 5), st.integers(0, 2**31))
def test_forward_matches_autograd_graph(width, seed):
    model = MLP([3, width, 2], "sigmoid", seed=seed)
    X = np.random.default_rng(seed).standard_normal((5, 3))
    assert model.loss_value(X, np.array([0, 1, 1, 0, 1])) == pytest.approx(
        -np.mean(
            np.log(
                np.exp(model.forward(X))[np.arange(5), [0, 1, 1, 0, 1]]
                / np.exp(model.forward(X)).sum(1)
            )
        ),
        rel=1e-12,
    )


@pytest.mark.parametrize("k", [1, 3, 4, 7])
def test_interrupted_run_resumes_exactly_mid_epoch(k):
    """Stop after k updates, resume with first_batch = k mod (batches per epoch): same bits."""
    X, y = blobs()
    per_epoch = -(-len(X) // 64)  # 7 batches of 64 (the last one 16)
    whole = MLP([4, 8, 3], seed=0)
    train(whole, X, y, epochs=2, lr=0.05, batch_size=64, momentum=0.9, seed=3)

    part = MLP([4, 8, 3], seed=0)
    opt = SGD(0.05, momentum=0.9)
    snapshots = {}
    train(
        part,
        X,
        y,
        epochs=2,
        batch_size=64,
        optimizer=opt,
        seed=3,
        callback=lambda t, m: snapshots.setdefault(
            t, (m.state_dict(), {n: v.copy() for n, v in opt.velocity.items()})
        ),
    )
    state, velocity = snapshots[k]
    resumed = MLP([4, 8, 3], seed=0)
    resumed.load_state_dict(state)
    opt2 = SGD(0.05, momentum=0.9)
    opt2.velocity = velocity
    rng = make_rng(3)
    for _ in range(k // per_epoch):
        rng.permutation(len(X))
    train(
        resumed,
        X,
        y,
        epochs=2 - k // per_epoch,
        batch_size=64,
        optimizer=opt2,
        seed=rng,
        start_step=k,
        first_batch=k % per_epoch,
    )
    for n in whole.params:
        assert whole.params[n].tobytes() == resumed.params[n].tobytes()
