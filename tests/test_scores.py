"""Saliency scores: each docstring formula on a hand-computed case, the article's example, and the
exactness of the Taylor rules on quadratic losses; model-level rules against independent derivatives.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refprune import autograd as ag
from refprune.curvature import hessian_diag
from refprune.masks import keep_top_k, prune, select_masks
from refprune.mlp import MLP
from refprune.scores import (
    RULES,
    compute_scores,
    gradient,
    grasp,
    magnitude,
    obd,
    obs_downdate,
    obs_saliency,
    obs_scores,
    obs_update,
    random_scores,
    synflow,
    synflow_scores,
    taylor1,
    taylor2,
    taylor2_abs,
)

FINITE = st.floats(-10.0, 10.0, allow_nan=False, allow_subnormal=False)


def keep(scores, n_keep):
    """Indices kept when n_keep of the entries are kept (higher score = kept)."""
    return set(np.flatnonzero(keep_top_k(np.asarray(scores, dtype=float), n_keep)).tolist())


def batch(model, n=9, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, model.sizes[0]))
    y = (
        rng.integers(0, model.n_outputs, n)
        if model.loss == "cross_entropy"
        else rng.standard_normal((n, model.n_outputs))
    )
    return X, y


def options(rule):
    return {"seed": 3} if rule == "random" else {"damping": 10.0} if rule == "obs" else {}


def same_state(a, b):
    return all(
        np.array_equal(a["params"][n], b["params"][n])
        and np.array_equal(a["masks"][n], b["masks"][n])
        for n in a["params"]
    )


# ---------------------------------------------------------------- the article's example
def test_article_example_magnitude_prunes_w1_obd_prunes_w2():
    # w1 = 0.01 sits in a direction of curvature h11 = 2000; w2 = 0.08 in a flat one (h22 = 0).
    w, h = np.array([0.01, 0.08]), np.array([2000.0, 0.0])
    assert keep(magnitude(w), 1) == {1}  # magnitude removes the tiny w1
    assert keep(obd(w, h), 1) == {0}  # OBD removes w2: 1/2*2000*1e-4 = 0.1 > 0
    assert obd(w, h).tolist() == [0.5 * 2000.0 * 0.01**2, 0.0]


def test_article_example_on_a_network_obd_is_right_and_magnitude_wrong():
    # A linear unit y = x.w fitted exactly (loss 0, gradient 0); h_jj = 2 mean(x_j^2):
    # column 1 of +-sqrt(1000) gives h11 = 2000, column 2 of +-0.1 gives h22 = 0.02 (nearly flat).
    x1 = np.sqrt(1000.0) * np.array([1.0, -1.0, 1.0, -1.0])
    X = np.stack([x1, 0.1 * np.array([1.0, 1.0, -1.0, -1.0])], axis=1)
    net = MLP([2, 1], "identity", loss="mse", seed=0)
    net.load_state_dict(
        {"params": {"layers.0.weight": np.array([[0.01, 0.08]]), "layers.0.bias": np.zeros(1)}}
    )
    y = X @ np.array([0.01, 0.08])
    h = hessian_diag(net, X, y[:, None])["layers.0.weight"]
    assert np.allclose(h, [[2000.0, 0.02]], rtol=1e-12)
    loss_without = []
    for j in range(2):
        m = net.copy()
        m.set_mask("layers.0.weight", (np.arange(2) != j)[None, :])
        loss_without.append(m.loss_value(X, y))
    assert loss_without[0] > 1000 * loss_without[1]  # removing w1 hurts far more
    mag = compute_scores("magnitude", net)["layers.0.weight"]
    sal = compute_scores("obd", net, X, y)["layers.0.weight"]
    assert keep(mag, 1) == {1} and keep(sal, 1) == {0}
    assert np.allclose(
        sal.ravel(), loss_without, rtol=1e-12
    )  # and OBD is exact here (g = 0, quadratic)


# ---------------------------------------------------------------- each formula, by hand
def test_magnitude_by_hand():
    assert magnitude(np.array([-2.0, 0.5, -0.0])).tolist() == [2.0, 0.5, 0.0]


def test_random_scores_are_one_uniform_draw_from_the_seeded_generator():
    expected = np.random.Generator(np.random.PCG64(5)).random((2, 3))
    assert np.array_equal(random_scores((2, 3), 5), expected)
    assert np.array_equal(random_scores(4, 5), np.random.Generator(np.random.PCG64(5)).random(4))


def test_gradient_by_hand():
    assert gradient(np.array([-3.0, 1.0])).tolist() == [3.0, 1.0]


def test_taylor1_by_hand():
    assert taylor1(np.array([2.0, -1.0]), np.array([0.5, 3.0])).tolist() == [1.0, 3.0]  # |g w|


def test_obd_by_hand():
    assert obd(np.array([2.0, -1.0]), np.array([3.0, 4.0])).tolist() == [6.0, 2.0]  # 1/2 h w^2


def test_taylor2_by_hand_and_negative_means_pruned_first():
    w, g, h = np.array([1.0, 2.0, -1.0]), np.array([4.0, 0.5, 3.0]), np.array([2.0, 3.0, 4.0])
    # -g w + 1/2 h w^2:  -4 + 1 = -3;  -1 + 6 = 5;  3 + 2 = 5
    assert taylor2(w, g, h).tolist() == [-3.0, 5.0, 5.0]
    assert taylor2_abs(w, g, h).tolist() == [3.0, 5.0, 5.0]
    assert keep(taylor2(w, g, h), 2) == {1, 2}  # removal lowers the loss: goes first


def test_obs_saliency_and_update_by_hand():
    # H = [[2, 1], [1, 2]], H^-1 = 1/3 [[2, -1], [-1, 2]], w = [1, 1], remove q = 0
    hinv = np.array([[2.0, -1.0], [-1.0, 2.0]]) / 3.0
    w = np.array([1.0, 1.0])
    assert np.allclose(obs_saliency(w, np.diag(hinv)), [0.75, 0.75])  # 1 / (2 * 2/3)
    dw = obs_update(w, hinv, 0)
    assert np.allclose(dw, [-1.0, 0.5])  # -(1 / (2/3)) * [2/3, -1/3]
    H = np.array([[2.0, 1.0], [1.0, 2.0]])
    assert np.isclose(0.5 * dw @ H @ dw, 0.75)  # the saliency is the increase
    assert np.allclose(obs_downdate(hinv, 0), [[0.5]])  # inverse of H without row/col 0


@given(st.integers(1, 7), st.integers(0, 10_000), st.data())
def test_obs_downdate_is_the_inverse_of_the_hessian_without_row_and_column_q(n, seed, data):
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((n + 1, n + 1))
    H = B @ B.T + 0.5 * np.eye(n + 1)
    q = data.draw(st.integers(0, n))
    keep_idx = np.arange(n + 1) != q
    expected = np.linalg.inv(H[np.ix_(keep_idx, keep_idx)])
    assert np.allclose(obs_downdate(np.linalg.inv(H), q), expected, rtol=1e-8, atol=1e-10)


def test_grasp_by_hand_and_it_removes_the_papers_highest_scores():
    w, hg = np.array([2.0, -1.0, 0.5]), np.array([3.0, 4.0, -2.0])
    s = grasp(w, hg)
    assert s.tolist() == [6.0, -4.0, -1.0]  # w (H g)
    paper = -w * hg  # Wang et al.: highest removed
    assert set(range(3)) - keep(s, 2) == {int(np.argmax(paper))}


def test_synflow_by_hand_and_each_layer_conserves_the_flow():
    W0 = np.array([[1.0, -2.0]])  # (1, 2)
    W1 = np.array([[3.0], [-1.0]])  # (2, 1)
    # a0 = [1, 1], a1 = [3], r2 = [1, 1], r1 = [4], R = 12
    s0, s1 = synflow([W0, W1])
    assert s0.tolist() == [[4.0, 8.0]] and s1.tolist() == [[9.0], [3.0]]
    assert s0.sum() == s1.sum() == 12.0


@given(st.integers(0, 10_000), st.lists(st.integers(1, 5), min_size=2, max_size=5))
def test_synflow_scores_of_every_layer_sum_to_R(seed, sizes):
    rng = np.random.default_rng(seed)
    Ws = [
        rng.standard_normal((o, i)) * (rng.random((o, i)) < 0.7) for i, o in zip(sizes, sizes[1:])
    ]
    s = synflow(Ws)
    R = (
        np.ones(sizes[-1])
        @ np.linalg.multi_dot([np.abs(W) for W in reversed(Ws)] + [np.ones(sizes[0])])
        if len(Ws) > 1
        else np.abs(Ws[0]).sum()
    )
    assert all(np.isclose(x.sum(), R, rtol=1e-12, atol=0) for x in s)


def test_synflow_equals_autograd_of_R_on_the_absolute_linear_network():
    net = MLP([5, 4, 3, 2], "relu", seed=1)
    prune(net, compute_scores("random", net, seed=0), 0.4)
    leaves = [ag.Tensor(np.abs(net.params[n]), requires_grad=True) for n in net.weight_names()]
    a = ag.Tensor(np.ones((1, 5)))
    for W in leaves:
        a = a @ W.T
    ag.sum(a).backward()
    s = synflow_scores(net)
    for n, W in zip(net.weight_names(), leaves):
        assert np.allclose(s[n], np.abs(W.grad * W.data), rtol=1e-13, atol=0)


# ---------------------------------------------------------------- exactness on quadratic losses
@st.composite
def quadratics(draw):
    """L(u) = 1/2 u^T A u + b^T u + c with A symmetric (any signs), and a point w."""
    n = draw(st.integers(1, 6))
    B = draw(hnp.arrays(np.float64, (n, n), elements=FINITE))
    A = B + B.T
    b = draw(hnp.arrays(np.float64, n, elements=FINITE))
    w = draw(hnp.arrays(np.float64, n, elements=FINITE))
    return A, b, w


def quad(A, b, u):
    return 0.5 * u @ A @ u + b @ u


@given(quadratics())
def test_taylor2_is_the_exact_loss_change_from_removing_one_weight_of_any_quadratic(q):
    A, b, w = q
    g, h = A @ w + b, np.diag(A).copy()
    s = taylor2(w, g, h)
    for i in range(w.size):
        u = w.copy()
        u[i] = 0.0
        true = quad(A, b, u) - quad(A, b, w)
        assert np.isclose(
            s[i], true, rtol=1e-9, atol=1e-9 * (1 + np.abs(A).sum() * (1 + np.abs(w).max()) ** 2)
        )


@given(quadratics())
def test_obd_is_the_exact_loss_change_where_the_gradient_is_zero(q):
    A, _, w = q
    b = -A @ w  # w is a stationary point: g = A w + b = 0
    s = obd(w, np.diag(A).copy())
    for i in range(w.size):
        u = w.copy()
        u[i] = 0.0
        true = quad(A, b, u) - quad(A, b, w)
        assert np.isclose(
            s[i], true, rtol=1e-9, atol=1e-9 * (1 + np.abs(A).sum() * (1 + np.abs(w).max()) ** 2)
        )


def _linear_mse(seed, fitted=False, n=12, d=3, k=2):
    """A linear mse model: its loss is exactly quadratic in (W, b)."""
    rng = np.random.default_rng(seed)
    X, Y = rng.standard_normal((n, d)), rng.standard_normal((n, k))
    net = MLP([d, k], "identity", loss="mse", seed=seed)
    if fitted:
        B = np.linalg.lstsq(np.hstack([X, np.ones((n, 1))]), Y, rcond=None)[0]
        net.load_state_dict(
            {"params": {"layers.0.weight": B[:d].T.copy(), "layers.0.bias": B[d].copy()}}
        )
    return net, X, Y


def _loss_change_removing_each(net, X, Y, name="layers.0.weight"):
    L0, out = net.loss_value(X, Y), np.zeros(net.params[name].shape)
    for idx in np.ndindex(out.shape):
        m = net.copy()
        mask = net.masks[name].copy()
        mask[idx] = False
        m.set_mask(name, mask)
        out[idx] = m.loss_value(X, Y) - L0
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_model_taylor2_is_the_exact_change_on_a_quadratic_loss(seed):
    net, X, Y = _linear_mse(seed)
    s = compute_scores("taylor2", net, X, Y)["layers.0.weight"]
    assert np.allclose(s, _loss_change_removing_each(net, X, Y), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("seed", [0, 1])
def test_model_obd_is_the_exact_change_at_the_minimum_of_a_quadratic_loss(seed):
    net, X, Y = _linear_mse(seed, fitted=True)
    s = compute_scores("obd", net, X, Y)["layers.0.weight"]
    assert np.allclose(s, _loss_change_removing_each(net, X, Y), rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("seed", [0, 1])
def test_model_obs_is_the_exact_change_with_the_others_reoptimised(seed):
    net, X, Y = _linear_mse(seed, fitted=True)
    s = obs_scores(net, X, Y, damping=0.0)["layers.0.weight"]
    L0 = net.loss_value(X, Y)
    Xa = np.hstack([X, np.ones((X.shape[0], 1))])
    for i, j in np.ndindex(s.shape):
        cols = np.arange(Xa.shape[1]) != j  # refit row i of (W | b) without input j
        resid = Y[:, i] - Xa[:, cols] @ np.linalg.lstsq(Xa[:, cols], Y[:, i], rcond=None)[0]
        resid_full = Y[:, i] - Xa @ np.linalg.lstsq(Xa, Y[:, i], rcond=None)[0]
        true = (resid @ resid - resid_full @ resid_full) / Y.size
        assert np.isclose(s[i, j], true, rtol=1e-8, atol=1e-14)
    assert np.isclose(L0, net.loss_value(X, Y))


# ---------------------------------------------------------------- model-level rules vs independent paths
def _fd_hessian_diag(net, X, y, eps=1e-4):
    """Central second differences of the loss, weights only."""
    out = {}
    for n in net.weight_names():
        h = np.zeros(net.params[n].shape)
        for idx in np.ndindex(h.shape):
            vals = []
            for step in (eps, 0.0, -eps):
                m = net.copy()
                m.params[n][idx] += step
                vals.append(m.loss_value(X, y))
            h[idx] = (vals[0] - 2 * vals[1] + vals[2]) / eps**2
        out[n] = h
    return out


@pytest.mark.parametrize("activation, loss", [("tanh", "cross_entropy"), ("sigmoid", "mse")])
def test_first_and_second_order_rules_match_autograd_and_finite_differences(activation, loss):
    net = MLP([3, 4, 2], activation, loss=loss, seed=4)
    X, y = batch(net)
    _, g = net.loss_and_grads(X, y)
    h = _fd_hessian_diag(net, X, y)
    for n in net.weight_names():
        w = net.params[n]
        assert np.allclose(
            compute_scores("gradient", net, X, y)[n], np.abs(g[n]), rtol=1e-12, atol=1e-15
        )
        assert np.allclose(
            compute_scores("taylor1", net, X, y)[n], np.abs(g[n] * w), rtol=1e-12, atol=1e-15
        )
        assert np.allclose(
            compute_scores("obd", net, X, y)[n], 0.5 * h[n] * w**2, rtol=1e-5, atol=1e-8
        )
        assert np.allclose(
            compute_scores("taylor2", net, X, y)[n],
            -g[n] * w + 0.5 * h[n] * w**2,
            rtol=1e-5,
            atol=1e-8,
        )
        assert np.allclose(
            compute_scores("taylor2_abs", net, X, y)[n],
            np.abs(-g[n] * w + 0.5 * h[n] * w**2),
            rtol=1e-5,
            atol=1e-8,
        )


def test_grasp_matches_w_times_a_finite_difference_hessian_gradient_product():
    net = MLP([3, 4, 3], "tanh", seed=6)
    X, y = batch(net)
    _, g = net.loss_and_grads(X, y)
    eps = 1e-5
    v = {n: (g[n] if n in net.weight_names() else np.zeros_like(g[n])) for n in net.params}
    plus, minus = net.copy(), net.copy()
    for n in net.params:
        plus.params[n] += eps * v[n]
        minus.params[n] -= eps * v[n]
    gp, gm = plus.loss_and_grads(X, y)[1], minus.loss_and_grads(X, y)[1]
    s = compute_scores("grasp", net, X, y)
    for n in net.weight_names():
        hg = (gp[n] - gm[n]) / (2 * eps)
        assert np.allclose(s[n], net.params[n] * hg, rtol=1e-6, atol=1e-10)


def test_hessian_method_is_passed_through_and_hutchinson_is_seeded():
    net = MLP([3, 4, 2], "tanh", seed=1)
    X, y = batch(net)
    w = net.params["layers.0.weight"]
    for method in ("exact", "ggn", "obd"):
        h = hessian_diag(net, X, y, method)["layers.0.weight"]
        assert np.array_equal(
            compute_scores("obd", net, X, y, hessian_method=method)["layers.0.weight"], obd(w, h)
        )
    a = compute_scores("obd", net, X, y, hessian_method="hutchinson", n_samples=4, seed=7)
    b = compute_scores("obd", net, X, y, hessian_method="hutchinson", n_samples=4, seed=7)
    h = hessian_diag(net, X, y, "hutchinson", n_samples=4, seed=7)["layers.0.weight"]
    assert np.array_equal(a["layers.0.weight"], b["layers.0.weight"])
    assert np.array_equal(a["layers.0.weight"], obd(w, h))


def test_random_rule_draws_in_names_order_and_is_reproducible():
    net = MLP([3, 4, 2], seed=0)
    names = ["layers.1.weight", "layers.0.bias"]
    s = compute_scores("random", net, names=names, seed=11)
    rng = np.random.Generator(np.random.PCG64(11))
    assert list(s) == names
    assert np.array_equal(s["layers.1.weight"], rng.random((2, 4)))
    assert np.array_equal(s["layers.0.bias"], rng.random(4))


# ---------------------------------------------------------------- conventions for every rule
@pytest.mark.parametrize("rule", RULES)
def test_every_rule_scores_pruned_entries_zero_keeps_shapes_and_never_mutates_the_model(rule):
    net = MLP([3, 4, 2], "tanh", loss="mse", seed=2)
    prune(net, compute_scores("random", net, seed=1), 0.5)
    X, y = batch(net)
    before = net.state_dict()
    s = compute_scores(rule, net, X, y, **options(rule))
    assert list(s) == net.weight_names()
    assert all(s[n].shape == net.params[n].shape and s[n].dtype == np.float64 for n in s)
    assert all(np.all(s[n][~net.masks[n]] == 0.0) for n in s)
    assert all(np.all(np.isfinite(s[n])) for n in s)
    assert same_state(before, net.state_dict())


@pytest.mark.parametrize("rule", [r for r in RULES if r != "synflow"])
def test_every_rule_scores_biases_when_named(rule):
    net = MLP([3, 4, 2], "tanh", loss="mse", seed=2)
    X, y = batch(net)
    names = net.bias_names() + net.weight_names()[:1]
    s = compute_scores(rule, net, X, y, names=names, **options(rule))
    assert list(s) == names and s["layers.0.bias"].shape == (4,)


@given(st.integers(0, 1000))
def test_magnitude_selection_is_the_same_for_scores_and_for_weights(seed):
    net = MLP([4, 3, 2], seed=seed)
    a = select_masks(compute_scores("magnitude", net), net.masks, 0.5)
    b = select_masks({n: np.abs(net.params[n]) for n in net.weight_names()}, net.masks, 0.5)
    assert all(np.array_equal(a[n], b[n]) for n in a)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda net, X, y: compute_scores("l0", net), ValueError, "unknown rule 'l0'"),
        (lambda net, X, y: compute_scores("obd", net), ValueError, "rule 'obd' needs data"),
        (lambda net, X, y: compute_scores("gradient", net, X), ValueError, "needs data"),
        (lambda net, X, y: compute_scores("random", net), ValueError, "seed must be given"),
        (
            lambda net, X, y: compute_scores("magnitude", net, damping=1.0),
            TypeError,
            r"unknown option\(s\) \['damping'\]",
        ),
        (
            lambda net, X, y: compute_scores("obd", net, X, y, n_samples=3),
            TypeError,
            "unknown option",
        ),
        (
            lambda net, X, y: compute_scores(
                "obd", net, X, y, hessian_method="hutchinson", n_samples=3
            ),
            ValueError,
            "seed must be given",
        ),
        (
            lambda net, X, y: compute_scores("obd", net, X, y, hessian_method="kfac"),
            ValueError,
            "hessian_method",
        ),
        (
            lambda net, X, y: compute_scores("magnitude", net, names=["w"]),
            ValueError,
            "parameters of the model",
        ),
        (lambda net, X, y: compute_scores("magnitude", net, names=[]), ValueError, "at least one"),
        (
            lambda net, X, y: compute_scores("magnitude", net, names="layers.0.weight"),
            TypeError,
            "sequence",
        ),
        (
            lambda net, X, y: compute_scores("synflow", net, names=["layers.0.bias"]),
            ValueError,
            "weight matrices only",
        ),
        (lambda net, X, y: compute_scores("magnitude", "net"), TypeError, "MLP"),
        (lambda net, X, y: compute_scores("gradient", net, X[:, :2], y), ValueError, "columns"),
        (lambda net, X, y: compute_scores("obs", net, X, y, damping=-1.0), ValueError, "damping"),
    ],
)
def test_compute_scores_bad_input(call, exc, match):
    net = MLP([3, 4, 2], "tanh", seed=0)
    X, y = batch(net)
    before = net.state_dict()
    with pytest.raises(exc, match=match):
        call(net, X, y)
    assert same_state(before, net.state_dict())


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: taylor1(np.ones(2), np.ones(3)), ValueError, r"g must have the shape of w \(2,\)"),
        (lambda: obd(np.ones(2), np.array([1.0, np.nan])), ValueError, "h must be finite"),
        (lambda: magnitude(np.array([1, 2])), TypeError, "floating-point"),
        (lambda: random_scores((2, -1), 0), ValueError, "shape"),
        (lambda: random_scores((2,), None), TypeError, "seed"),
        (
            lambda: obs_saliency(np.ones(2), np.array([1.0, 0.0])),
            ValueError,
            "hinv_diag must be > 0",
        ),
        (lambda: obs_update(np.ones(2), np.eye(2), 2), ValueError, r"q must be in \[0, 2\)"),
        (lambda: obs_downdate(np.eye(3)[:2], 0), ValueError, "square"),
        (
            lambda: synflow([np.ones((2, 3)), np.ones((2, 3))]),
            ValueError,
            r"weights\[1\] must have 2 columns",
        ),
        (lambda: synflow(np.ones((2, 2))), TypeError, "sequence"),
        (lambda: synflow([np.full((2, 2), 1e200)] * 3), ValueError, "overflowed"),
    ],
)
def test_array_level_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_array_functions_do_not_modify_their_inputs():
    w, g, h = np.array([1.0, -2.0]), np.array([0.5, 0.5]), np.array([1.0, 2.0])
    copies = w.copy(), g.copy(), h.copy()
    for f in (
        lambda: magnitude(w),
        lambda: taylor1(w, g),
        lambda: obd(w, h),
        lambda: taylor2(w, g, h),
        lambda: taylor2_abs(w, g, h),
        lambda: grasp(w, h),
        lambda: synflow([w[None, :]]),
    ):
        f()
    assert all(np.array_equal(a, b) for a, b in zip((w, g, h), copies))
