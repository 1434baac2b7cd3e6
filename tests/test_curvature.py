"""Curvature: explicit gradient, R-operator HVP, full Hessian and the four Hessian diagonals.

Each quantity is checked against an independent path: the explicit gradient
against autograd, HVPs against central differences of the autograd gradient,
the exact diagonal against the diagonal of the full Hessian, the GGN against
J^T H_out J with J from central differences of the forward pass, OBD against a
per-sample loop written straight from the Becker-LeCun equations, Hutchinson
against the exact diagonal within its standard error.

Tolerances are norm-wise: max|a - b| <= tol * max|b|; a Hessian diagonal d is
compared with diag(H) as max_i |d_i - H_ii| <= tol * max_i |H_ii| (``diag_err``).
"""

from __future__ import annotations

from typing import NamedTuple
from unittest import mock

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from refprune import curvature as cv
from refprune.activations import get_activation
from refprune.mlp import MLP
from refprune.rng import make_rng

ACTIVATIONS = ("relu", "tanh", "sigmoid", "identity")
SMOOTH = ("tanh", "sigmoid", "identity")
LOSSES = ("cross_entropy", "mse")


class Problem(NamedTuple):
    model: MLP
    X: np.ndarray
    y: np.ndarray


def rel_err(a, b) -> float:
    """max|a - b| / max|b| (0 when equal, inf when b == 0 != a)."""
    a, b = np.asarray(a), np.asarray(b)
    diff = np.max(np.abs(a - b)) if a.size else 0.0
    if diff == 0.0:
        return 0.0
    scale = np.max(np.abs(b))
    return diff / scale if scale > 0 else np.inf


DIAG_FLOOR = 1e-2  # see diag_err


def diag_err(d, H) -> float:
    """max_i |d_i - H_ii| / max(max_i |H_ii|, DIAG_FLOOR).

    Relative to the largest diagonal entry, except where the whole diagonal is
    small: two float64 computations of an entry differ by rounding relative to
    the terms summed into it, which in these problems (unit-scale weights and
    inputs) are O(1) even where the entry is not. A saturated softmax
    (p = 1 - 1e-28) leaves a diagonal of ~1e-28 whose two computations share
    no significant digit, and a ReLU network at a zero input cancels terms to
    ~1e-3 (measured 7.6e-10 relative there); below DIAG_FLOOR the test is
    absolute (tol * 1e-2: 1e-12 for tol = 1e-10).
    """
    diff = np.max(np.abs(np.asarray(d) - np.diag(H)))
    return 0.0 if diff == 0.0 else diff / max(np.max(np.abs(np.diag(H))), DIAG_FLOOR)


def flat(d, model):
    return cv.flatten_params(d, model)


def make_problem(
    sizes,
    activation="tanh",
    loss="cross_entropy",
    *,
    n=5,
    seed=0,
    sigma=1.0,
    x_kind="normal",
    prune=0.0,
) -> Problem:
    """A random network and batch; biases are random too (the default init zeroes them).

    x_kind: "normal", "zeros", "signed_zero" (all -0.0), "equal_rows" (one row repeated).
    prune: fraction of entries (weights and biases) masked off at random.
    """
    model = MLP(sizes, activation, loss=loss, init="normal", sigma=sigma, seed=seed)
    rng = make_rng(seed + 1)
    for name in model.bias_names():
        model.params[name][...] = 0.5 * rng.standard_normal(model.params[name].shape)
    if prune > 0:
        model.set_masks({k: rng.random(p.shape) >= prune for k, p in model.params.items()})
    if x_kind == "zeros":
        X = np.zeros((n, sizes[0]))
    elif x_kind == "signed_zero":
        X = np.full((n, sizes[0]), -0.0)
    elif x_kind == "equal_rows":
        X = np.repeat(rng.standard_normal((1, sizes[0])), n, axis=0)
    else:
        X = rng.standard_normal((n, sizes[0]))
    if loss == "cross_entropy":
        y = rng.integers(0, sizes[-1], n)
    else:
        y = rng.standard_normal((n, sizes[-1]))
    return Problem(model, X, y)


@st.composite
def problems(
    draw, activations=ACTIVATIONS, losses=LOSSES, min_hidden=0, max_hidden=3, allow_prune=True
) -> Problem:
    """Tiny networks at the edges: widths and batches of 1, one class, zero and -0.0 inputs,
    repeated rows, pruned entries, large weights (gradient far from zero)."""
    activation = draw(st.sampled_from(activations))
    loss = draw(st.sampled_from(losses))
    depth = draw(st.integers(min_hidden, max_hidden))
    sizes = tuple(draw(st.integers(1, 4)) for _ in range(depth + 2))
    return make_problem(
        sizes,
        activation,
        loss,
        n=draw(st.integers(1, 5)),
        seed=draw(st.integers(0, 2**31)),
        sigma=draw(st.sampled_from([0.5, 1.0, 2.0])),
        x_kind=draw(st.sampled_from(["normal", "normal", "zeros", "signed_zero", "equal_rows"])),
        prune=draw(st.sampled_from([0.0, 0.0, 0.3])) if allow_prune else 0.0,
    )


def with_params(model: MLP, vec: np.ndarray) -> MLP:
    """A copy of ``model`` with theta = vec (pruned entries stay masked in the forward pass)."""
    m = model.copy()
    for name, arr in cv.unflatten_params(vec, model).items():
        m.params[name] = arr
    return m


def relu_pattern(model: MLP, X: np.ndarray) -> list[np.ndarray]:
    """Signs of the hidden pre-activations (where ReLU's derivative changes)."""
    eff, a, out = model.effective_params(), X, []
    for l in range(model.n_layers - 1):
        z = a @ eff[f"layers.{l}.weight"].T + eff[f"layers.{l}.bias"]
        out.append(z > 0)
        a = np.maximum(z, 0.0)
    return out


# ============================================================== gradient
@given(problems())
def test_explicit_gradient_equals_autograd(pb):
    g = cv.gradient(*pb)
    _, g_ag = pb.model.loss_and_grads(pb.X, pb.y)
    assert rel_err(flat(g, pb.model), flat(g_ag, pb.model)) <= 1e-12


def test_explicit_gradient_far_from_zero_named_case():
    # large weights: a point where the gradient is big, so the sigma'' terms matter below
    pb = make_problem((3, 5, 4, 3), "tanh", "cross_entropy", n=6, seed=3, sigma=2.0)
    g = flat(cv.gradient(*pb), pb.model)
    assert np.max(np.abs(g)) > 0.1
    assert rel_err(g, flat(pb.model.loss_and_grads(pb.X, pb.y)[1], pb.model)) <= 1e-12


# ============================================================== Hessian-vector products
@given(problems(), st.integers(0, 2**31))
def test_hvp_equals_central_differences_of_the_autograd_gradient(pb, seed):
    model, X, y = pb
    theta = flat(model.params, model)
    v = make_rng(seed).standard_normal(theta.size)
    v /= np.linalg.norm(v)
    eps = 1e-5
    plus, minus = with_params(model, theta + eps * v), with_params(model, theta - eps * v)
    if model.activation == "relu":  # the difference quotient is valid only off ReLU's kinks
        pats = [relu_pattern(m, X) for m in (model, plus, minus)]
        assume(
            all(np.array_equal(p, q) for p, q in zip(pats[0], pats[1]))
            and all(np.array_equal(p, q) for p, q in zip(pats[0], pats[2]))
        )
    gp = flat(plus.loss_and_grads(X, y)[1], model)
    gm = flat(minus.loss_and_grads(X, y)[1], model)
    fd = (gp - gm) / (2 * eps)
    hv = flat(cv.hvp(model, X, y, cv.unflatten_params(v, model)), model)
    # relative to the scale max_i sum_j |H_ij v_j| of the terms of H v; plus a rounding
    # floor of about eps_machine * (terms of g) / eps for the difference quotient, the terms
    # being O(1) in these unit-scale problems even where g itself cancels to ~1e-8
    scale = np.max(np.abs(cv.full_hessian(model, X, y)) @ np.abs(v))
    floor = 1e-9 * max(1.0, np.max(np.abs(gp)))
    assert np.max(np.abs(hv - fd)) <= 1e-6 * scale + floor


@given(problems(), st.integers(0, 2**31))
def test_hvp_equals_full_hessian_times_v_and_hessian_is_symmetric(pb, seed):
    model = pb.model
    H = cv.full_hessian(*pb)
    v = make_rng(seed).standard_normal(H.shape[0])
    hv = flat(cv.hvp(*pb, cv.unflatten_params(v, model)), model)
    # relative, with diag_err's absolute floor for a Hessian that is only rounding (~1e-9)
    assert np.max(np.abs(hv - H @ v)) <= 1e-10 * max(np.max(np.abs(H) @ np.abs(v)), DIAG_FLOOR)
    assert np.max(np.abs(H - H.T)) <= 1e-10 * max(np.max(np.abs(H)), DIAG_FLOOR)


def test_full_hessian_column_is_hvp_with_unit_vector():
    pb = make_problem((3, 4, 2), "sigmoid", "mse", seed=5)
    H = cv.full_hessian(*pb)
    j = 7
    e = np.zeros(H.shape[0])
    e[j] = 1.0
    assert rel_err(H[:, j], flat(cv.hvp(*pb, cv.unflatten_params(e, pb.model)), pb.model)) <= 1e-14


# ============================================================== exact diagonal
@given(problems())
def test_exact_diagonal_equals_diagonal_of_full_hessian(pb):
    assert diag_err(flat(cv.hessian_diag(*pb), pb.model), cv.full_hessian(*pb)) <= 1e-10


@given(problems(min_hidden=1))
def test_chunked_batch_gives_the_same_diagonals(pb):
    # one sample per chunk instead of the whole batch: only rounding may differ
    for method in ("exact", "ggn", "obd"):
        whole = flat(cv.hessian_diag(*pb, method), pb.model)
        with mock.patch.object(cv, "_CHUNK_FLOATS", 1):
            chunked = flat(cv.hessian_diag(*pb, method), pb.model)
        assert rel_err(chunked, whole) <= 1e-12


@given(problems(min_hidden=2, activations=("tanh", "sigmoid", "relu")))
def test_folding_factors_into_full_matrices_gives_the_same_diagonal(pb):
    # the exact route keeps factors while they are narrower than the layer; forcing the
    # full-matrix representation at every layer must not change the result
    fold = cv._consolidate
    whole = flat(cv.hessian_diag(*pb), pb.model)
    with mock.patch.object(cv, "_consolidate", lambda parts, width: fold(parts, 0)):
        folded = flat(cv.hessian_diag(*pb), pb.model)
    assert rel_err(folded, whole) <= 1e-12


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize(
    "sizes",
    [
        (4, 3),  # single layer
        (3, 5, 4, 3),  # two hidden layers, factor route throughout
        (2, 2, 2, 6, 6, 3),  # factors wider than a layer: folded into a full matrix
        (5, 1, 3, 1, 2),  # width-1 bottlenecks
    ],
)
def test_exact_diagonal_named_shapes_far_from_a_minimum(activation, loss, sizes):
    pb = make_problem(sizes, activation, loss, n=6, seed=11, sigma=2.0, prune=0.2)
    assert np.max(np.abs(flat(cv.gradient(*pb), pb.model))) > 1e-2
    d = flat(cv.hessian_diag(*pb), pb.model)
    assert diag_err(d, cv.full_hessian(*pb)) <= 1e-10


# ============================================================== GGN
@given(problems(activations=("relu", "identity")))
def test_ggn_equals_exact_for_piecewise_linear_activations(pb):
    assert diag_err(flat(cv.hessian_diag(*pb, "ggn"), pb.model), cv.full_hessian(*pb)) <= 1e-10


def ggn_diag_by_finite_difference_jacobian(model, X, y):
    """diag(sum_n J_n^T H_out,n J_n), J_n = df(x_n)/dtheta by central differences."""
    theta = flat(model.params, model)
    eps = 1e-6
    J = np.empty((X.shape[0], model.n_outputs, theta.size))
    for j in range(theta.size):
        e = np.zeros_like(theta)
        e[j] = eps
        J[:, :, j] = (
            with_params(model, theta + e).forward(X) - with_params(model, theta - e).forward(X)
        ) / (2 * eps)
    f, N, K = model.forward(X), X.shape[0], model.n_outputs
    if model.loss == "cross_entropy":
        p = np.exp(f - f.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        Hout = (np.einsum("nk,kl->nkl", p, np.eye(K)) - np.einsum("nk,nl->nkl", p, p)) / N
    else:
        Hout = np.broadcast_to(2.0 * np.eye(K) / (N * K), (N, K, K))
    return np.einsum("nki,nkl,nli->i", J, Hout, J)


@given(problems(activations=SMOOTH, max_hidden=2))
def test_ggn_equals_jacobian_gauss_newton_diagonal(pb):
    ref = ggn_diag_by_finite_difference_jacobian(*pb)
    assert np.max(np.abs(flat(cv.hessian_diag(*pb, "ggn"), pb.model) - ref)) <= 1e-6 * max(
        np.max(np.abs(ref)), 1e-6
    )


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_ggn_differs_from_exact_for_smooth_activations(activation):
    # one hidden layer: the only dropped term is diag(sigma''(z_1) * (delta_2 W_1)), so the
    # gap at the first-layer biases is exactly sum_n sigma''(z_1) (delta_2 W_1)
    pb = make_problem((3, 4, 3), activation, "cross_entropy", n=8, seed=2, sigma=2.0)
    exact = cv.hessian_diag(*pb)
    ggn = cv.hessian_diag(*pb, "ggn")
    gap = exact["layers.0.bias"] - ggn["layers.0.bias"]
    W0, b0, W1 = (
        pb.model.params[k] for k in ("layers.0.weight", "layers.0.bias", "layers.1.weight")
    )
    z1 = pb.X @ W0.T + b0
    f = np.tanh(z1) if activation == "tanh" else 1 / (1 + np.exp(-z1))
    logits = f @ W1.T + pb.model.params["layers.1.bias"]
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    d2 = p.copy()
    d2[np.arange(len(pb.y)), pb.y] -= 1.0
    d2 /= len(pb.y)
    expected_gap = (get_activation(activation).second(z1) * (d2 @ W1)).sum(0)
    assert rel_err(gap, expected_gap) <= 1e-12
    assert np.max(np.abs(gap)) > 1e-3 * np.max(np.abs(exact["layers.0.bias"]))
    assert rel_err(flat(ggn, pb.model), flat(exact, pb.model)) > 1e-3


# ============================================================== OBD
def obd_reference(model, X, y, magnitudes=False):
    """Becker-LeCun diagonal backpropagation, one sample at a time, written out in loops.

    With ``magnitudes=True`` the same loops run on the sizes of the terms instead
    (|W|, |g|, |f''|, and p in place of p (1 - p), which is p - p^2 to rounding): a
    running error bound in the manner of Higham's "Accuracy and Stability of
    Numerical Algorithms" (2002, section 3.3). Two correct computations of an entry
    differ by rounding relative to these sizes, not to the entry: a saturated
    softmax (p = 1 - 1e-5) leaves p (1 - p) = 1e-5 with its last 5 digits lost.
    """
    act = get_activation(model.activation)
    W_fwd = [model.effective_params()[n] for n in model.weight_names()]
    b = [model.effective_params()[n] for n in model.bias_names()]
    W = [np.abs(w) for w in W_fwd] if magnitudes else W_fwd
    L, N = len(W), X.shape[0]
    out = {k: np.zeros(p.shape) for k, p in model.params.items()}
    for n in range(N):
        a, z = [X[n]], [None]
        for l in range(L):
            z.append(W_fwd[l] @ a[l] + b[l])
            a.append(act.value(z[-1]))
        f = z[L]
        if model.loss == "cross_entropy":
            p = np.exp(f - f.max())
            p /= p.sum()
            e = np.zeros_like(p)
            e[y[n]] = 1.0
            if magnitudes:
                g, h = (p + e) / N, p / N
            else:
                g, h = (p - e) / N, p * (1 - p) / N
        else:
            K = f.size
            r = np.abs(f) + np.abs(y[n]) if magnitudes else f - y[n]
            g, h = 2 * r / (N * K), np.full(K, 2.0 / (N * K))
        for l in range(L - 1, -1, -1):
            for i in range(W[l].shape[0]):
                out[f"layers.{l}.bias"][i] += h[i]
                for j in range(W[l].shape[1]):
                    out[f"layers.{l}.weight"][i, j] += h[i] * a[l][j] ** 2
            if l > 0:
                back = W[l].T @ g
                first, second = act.first(z[l]), act.second(z[l])
                if magnitudes:
                    first, second = np.abs(first), np.abs(second)
                h_new = np.zeros(W[l].shape[1])
                for i in range(W[l].shape[1]):
                    h_new[i] = (
                        first[i] ** 2 * sum(W[l][k, i] ** 2 * h[k] for k in range(W[l].shape[0]))
                        + second[i] * back[i]
                    )
                g, h = back * first, h_new
    return {k: np.where(model.masks[k], v, 0.0) for k, v in out.items()}


def check_obd_against_the_recursion(pb: Problem) -> None:
    """Within 1e-12 of the sizes of the terms (``obd_reference(magnitudes=True)``); where
    nothing cancels, those sizes are the entries themselves."""
    obd, ref = flat(cv.hessian_diag(*pb, "obd"), pb.model), flat(obd_reference(*pb), pb.model)
    sizes = flat(obd_reference(*pb, magnitudes=True), pb.model)
    assert np.all(sizes >= np.abs(ref))
    assert np.max(np.abs(obd - ref), initial=0.0) <= 1e-12 * np.max(sizes, initial=0.0)


@given(problems(max_hidden=2))
def test_obd_follows_the_becker_lecun_recursion(pb):
    check_obd_against_the_recursion(pb)


def test_obd_error_scale_is_the_sizes_of_the_terms_under_a_saturated_softmax():
    # the case that needs the running bound: p = 1 - 1e-5 at the output, where the two
    # routes' p (1 - p) agree to 3.3e-12 of its value, 1e-16 of the terms' size
    X = np.array([[1.19081822], [1.50101822]])
    model = MLP((1, 4, 3), "relu", loss="cross_entropy")
    model.params["layers.0.weight"][...] = [[-0.0459667], [1.14841066], [3.41790337], [3.88944577]]
    model.params["layers.0.bias"][...] = [0.42289453, 0.51829962, -0.78739994, -0.0335792]
    model.params["layers.1.weight"][...] = [
        [3.1354975, -0.58590409, -0.93078814, -2.26119029],
        [-0.57655827, -0.11423588, -0.90514815, 1.40037653],
        [1.81471223, -0.3678791, 0.62173635, -2.17152776],
    ]
    model.params["layers.1.bias"][...] = [-0.21882878, -0.25859869, 0.25686341]
    pb = Problem(model, X, np.array([1, 2]))
    ref = obd_reference(*pb)["layers.1.bias"]
    sizes = obd_reference(*pb, magnitudes=True)["layers.1.bias"]
    assert np.max(ref) < 1e-4 * np.max(sizes)  # p (1 - p) far below p: the cancellation
    check_obd_against_the_recursion(pb)


@given(problems(max_hidden=0))
def test_obd_is_exact_for_a_single_linear_layer(pb):
    assert diag_err(flat(cv.hessian_diag(*pb, "obd"), pb.model), cv.full_hessian(*pb)) <= 1e-10


@given(problems(losses=("mse",), min_hidden=1, max_hidden=1))
def test_obd_is_exact_for_mse_with_one_hidden_layer(pb):
    # H_out = 2 I / (N K) is diagonal, so the one propagation step drops nothing
    assert diag_err(flat(cv.hessian_diag(*pb, "obd"), pb.model), cv.full_hessian(*pb)) <= 1e-10


@pytest.mark.parametrize(
    "activation, loss, sizes",
    [
        ("relu", "cross_entropy", (3, 4, 3)),  # off-diagonal softmax Hessian dropped
        ("identity", "mse", (3, 4, 4, 2)),  # off-diagonal W^T W dropped at the second step
        ("tanh", "cross_entropy", (3, 5, 4, 3)),
    ],
)
def test_obd_differs_from_exact_on_multilayer_networks(activation, loss, sizes):
    pb = make_problem(sizes, activation, loss, n=8, seed=4)
    exact = flat(cv.hessian_diag(*pb), pb.model)
    obd = flat(cv.hessian_diag(*pb, "obd"), pb.model)
    assert rel_err(obd, exact) > 1e-2
    # the last layer sees H_out only through its diagonal, so it is exact there
    last = pb.model.n_layers - 1
    for k in (f"layers.{last}.weight", f"layers.{last}.bias"):
        e, o = cv.hessian_diag(*pb)[k], cv.hessian_diag(*pb, "obd")[k]
        assert rel_err(o, e) <= 1e-12


# ============================================================== Hutchinson
def test_hutchinson_mean_is_within_five_standard_errors_of_exact():
    pb = make_problem((3, 4, 3), "tanh", "cross_entropy", n=6, seed=8, sigma=1.5, prune=0.2)
    S = 4000
    est = flat(cv.hessian_diag(*pb, "hutchinson", n_samples=S, seed=123), pb.model)
    H = cv.full_hessian(*pb)
    exact = np.diag(H)
    # Var(v_i (H v)_i) = sum_{j != i} H_ij^2 for Rademacher v, so the standard error of the
    # mean of S probes is sqrt(sum_{j != i} H_ij^2 / S)
    se = np.sqrt(((H**2).sum(1) - exact**2) / S)
    assert np.all(np.abs(est - exact) <= 5 * se + 1e-12)
    # and the estimate is informative: its error is far below the spread of the diagonal
    assert np.max(np.abs(est - exact)) < 0.2 * np.max(np.abs(exact))


def test_hutchinson_follows_the_documented_draw_order():
    pb = make_problem((2, 3, 2), "sigmoid", "mse", n=4, seed=9, prune=0.3)
    S, P = 70, cv.n_params(pb.model)  # 70 > one probe chunk, so the batching is covered
    rng = make_rng(5)
    acc = np.zeros(P)
    for _ in range(S):
        v = (rng.integers(0, 2, size=P) * 2 - 1).astype(np.float64)
        acc += v * flat(cv.hvp(*pb, cv.unflatten_params(v, pb.model)), pb.model)
    est = flat(cv.hessian_diag(*pb, "hutchinson", n_samples=S, seed=5), pb.model)
    assert rel_err(est, acc / S) <= 1e-12


def test_hutchinson_recovers_a_diagonal_hessian_with_one_probe():
    # one input feature and the biases pruned: H = (2 / (N K)) sum_n x_n^2 I is diagonal
    pb = make_problem((1, 3), "identity", "mse", n=4, seed=1)
    pb.model.set_mask("layers.0.bias", np.zeros(3, dtype=bool))
    est = cv.hessian_diag(*pb, "hutchinson", n_samples=1, seed=0)
    exact = cv.hessian_diag(*pb)
    assert rel_err(flat(est, pb.model), flat(exact, pb.model)) <= 1e-14


def test_hutchinson_accepts_a_generator_and_continues_its_stream():
    pb = make_problem((2, 3, 2), "tanh", "cross_entropy", seed=2)
    a = cv.hessian_diag(*pb, "hutchinson", n_samples=3, seed=make_rng(7))
    g = make_rng(7)
    b1 = cv.hessian_diag(*pb, "hutchinson", n_samples=3, seed=g)
    b2 = cv.hessian_diag(*pb, "hutchinson", n_samples=3, seed=g)
    assert all(np.array_equal(a[k], b1[k]) for k in a)
    assert any(not np.array_equal(b1[k], b2[k]) for k in a)


# ============================================================== masks, determinism, no mutation
@given(problems(max_hidden=2), st.integers(0, 2**31))
def test_pruned_entries_have_exact_zeros_everywhere(pb, seed):
    model = pb.model
    model.set_masks({k: make_rng(seed).random(p.shape) < 0.6 for k, p in model.params.items()})
    dead = ~flat(model.masks, model)
    H = cv.full_hessian(*pb)
    v = make_rng(seed + 1).standard_normal(dead.size)
    outs = [
        cv.gradient(*pb),
        cv.hvp(*pb, cv.unflatten_params(v, model)),
        *(cv.hessian_diag(*pb, m) for m in ("exact", "ggn", "obd")),
        cv.hessian_diag(*pb, "hutchinson", n_samples=2, seed=0),
    ]
    for d in outs:
        vals = flat(d, model)[dead]
        assert np.all(vals == 0.0) and not np.any(np.signbit(vals))
    assert np.all(H[dead, :] == 0.0) and np.all(H[:, dead] == 0.0)
    # pruned entries of v have no effect on H v
    v2 = v.copy()
    v2[dead] = 1e3
    assert np.array_equal(
        flat(cv.hvp(*pb, cv.unflatten_params(v2, model)), model),
        flat(cv.hvp(*pb, cv.unflatten_params(v, model)), model),
    )


def test_same_inputs_give_identical_bits_and_nothing_is_mutated():
    pb = make_problem((3, 4, 2), "tanh", "mse", seed=6, prune=0.3)
    X0, y0 = pb.X.copy(), pb.y.copy()
    state = pb.model.state_dict()
    v = cv.unflatten_params(np.linspace(-1, 1, cv.n_params(pb.model)), pb.model)
    v0 = {k: a.copy() for k, a in v.items()}
    calls = [
        lambda: cv.gradient(*pb),
        lambda: cv.hvp(*pb, v),
        lambda: {"H": cv.full_hessian(*pb)},
        *(lambda m=m: cv.hessian_diag(*pb, m) for m in ("exact", "ggn", "obd")),
        lambda: cv.hessian_diag(*pb, "hutchinson", n_samples=5, seed=3),
    ]
    for call in calls:
        a, b = call(), call()
        assert all(np.array_equal(a[k], b[k]) for k in a)
    assert np.array_equal(pb.X, X0) and np.array_equal(pb.y, y0)
    assert all(np.array_equal(v[k], v0[k]) for k in v)
    assert all(np.array_equal(pb.model.params[k], state["params"][k]) for k in state["params"])
    assert all(np.array_equal(pb.model.masks[k], state["masks"][k]) for k in state["masks"])


def test_output_dicts_follow_the_model_parameter_order_and_shapes():
    pb = make_problem((3, 4, 2), "relu", "cross_entropy")
    for d in (cv.gradient(*pb), cv.hessian_diag(*pb, "obd")):
        assert list(d) == list(pb.model.params)
        assert all(
            d[k].shape == p.shape and d[k].dtype == np.float64 for k, p in pb.model.params.items()
        )


# ============================================================== flat vectors
@given(problems(max_hidden=2), st.integers(0, 2**31))
def test_unflatten_inverts_flatten_in_c_order(pb, seed):
    model = pb.model
    vec = make_rng(seed).standard_normal(cv.n_params(model))
    d = cv.unflatten_params(vec, model)
    assert np.array_equal(cv.flatten_params(d, model), vec)
    assert np.array_equal(
        vec[: model.params["layers.0.weight"].size], d["layers.0.weight"].ravel(order="C")
    )
    masks = cv.flatten_params(model.masks, model)
    assert masks.dtype == np.bool_ and masks.size == vec.size
    assert all(
        np.array_equal(cv.unflatten_params(masks, model)[k], model.masks[k]) for k in model.masks
    )


# ============================================================== bad input
PB = make_problem((3, 4, 2), "tanh", "cross_entropy", n=4, seed=0)
PBM = make_problem((3, 4, 2), "tanh", "mse", n=4, seed=0)
V_OK = {k: np.ones(p.shape) for k, p in PB.model.params.items()}


def _nan(a, pos=(0, 0)):
    a = np.array(a, dtype=float)
    a[pos] = np.nan
    return a


BAD_CALLS = [
    # (id, call, exception, words in the message)
    ("X wrong width", lambda: cv.gradient(PB.model, np.ones((4, 2)), PB.y), ValueError, "X"),
    ("X NaN", lambda: cv.hessian_diag(PB.model, _nan(PB.X), PB.y), ValueError, "X"),
    ("X inf", lambda: cv.hvp(PB.model, PB.X * np.inf, PB.y, V_OK), ValueError, "X"),
    ("X ints", lambda: cv.full_hessian(PB.model, np.ones((4, 3), dtype=int), PB.y), TypeError, "X"),
    ("y too short", lambda: cv.gradient(PB.model, PB.X, PB.y[:2]), ValueError, "y"),
    ("y label out of range", lambda: cv.hessian_diag(PB.model, PB.X, PB.y + 5), ValueError, "y"),
    ("y missing", lambda: cv.gradient(PB.model, PB.X, None), TypeError, "y"),
    ("mse target NaN", lambda: cv.hessian_diag(PBM.model, PBM.X, _nan(PBM.y)), ValueError, "y"),
    ("mse target shape", lambda: cv.hvp(PBM.model, PBM.X, PBM.y[:, :1], V_OK), ValueError, "y"),
    ("model not an MLP", lambda: cv.gradient("net", PB.X, PB.y), TypeError, "model"),
    ("unknown method", lambda: cv.hessian_diag(*PB, "kfac"), ValueError, "method"),
    ("method not a string", lambda: cv.hessian_diag(*PB, 1), TypeError, "method"),
    (
        "hutchinson n_samples 0",
        lambda: cv.hessian_diag(*PB, "hutchinson", n_samples=0, seed=0),
        ValueError,
        "n_samples",
    ),
    (
        "hutchinson n_samples float",
        lambda: cv.hessian_diag(*PB, "hutchinson", n_samples=2.0, seed=0),
        TypeError,
        "n_samples",
    ),
    (
        "hutchinson n_samples missing",
        lambda: cv.hessian_diag(*PB, "hutchinson", seed=0),
        ValueError,
        "n_samples",
    ),
    (
        "hutchinson seed missing",
        lambda: cv.hessian_diag(*PB, "hutchinson", n_samples=3),
        ValueError,
        "seed",
    ),
    (
        "hutchinson seed negative",
        lambda: cv.hessian_diag(*PB, "hutchinson", n_samples=3, seed=-1),
        ValueError,
        "seed",
    ),
    (
        "n_samples with exact",
        lambda: cv.hessian_diag(*PB, "exact", n_samples=3),
        ValueError,
        "n_samples",
    ),
    ("seed with obd", lambda: cv.hessian_diag(*PB, "obd", seed=1), ValueError, "seed"),
    ("v not a mapping", lambda: cv.hvp(*PB, np.ones(26)), TypeError, "v"),
    (
        "v missing a name",
        lambda: cv.hvp(*PB, {k: a for k, a in V_OK.items() if "bias" not in k}),
        ValueError,
        "missing",
    ),
    (
        "v extra name",
        lambda: cv.hvp(*PB, {**V_OK, "layers.9.weight": np.ones(2)}),
        ValueError,
        "unexpected",
    ),
    (
        "v wrong shape",
        lambda: cv.hvp(*PB, {**V_OK, "layers.0.bias": np.ones(5)}),
        ValueError,
        "shape",
    ),
    (
        "v NaN",
        lambda: cv.hvp(*PB, {**V_OK, "layers.1.weight": _nan(V_OK["layers.1.weight"])}),
        ValueError,
        "finite",
    ),
    (
        "v ints",
        lambda: cv.hvp(*PB, {**V_OK, "layers.0.bias": np.ones(4, dtype=int)}),
        TypeError,
        "v",
    ),
    (
        "full Hessian too large",
        lambda: cv.full_hessian(*PB, max_params=10),
        ValueError,
        "max_params",
    ),
    ("max_params zero", lambda: cv.full_hessian(*PB, max_params=0), ValueError, "max_params"),
    (
        "allow_large not bool",
        lambda: cv.full_hessian(*PB, allow_large="yes"),
        TypeError,
        "allow_large",
    ),
    (
        "unflatten wrong length",
        lambda: cv.unflatten_params(np.ones(3), PB.model),
        ValueError,
        "vec",
    ),
    (
        "unflatten NaN",
        lambda: cv.unflatten_params(np.full(26, np.nan), PB.model),
        ValueError,
        "vec",
    ),
    (
        "flatten mixed kinds",
        lambda: cv.flatten_params({**V_OK, "layers.0.bias": np.ones(4, bool)}, PB.model),
        TypeError,
        "d",
    ),
]


@pytest.mark.parametrize(
    "call, exc, words", [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS]
)
def test_bad_input_raises_a_clear_error(call, exc, words):
    with pytest.raises(exc, match=words):
        call()


def test_full_hessian_above_the_limit_runs_when_allowed():
    H = cv.full_hessian(*PB, max_params=10, allow_large=True)
    assert H.shape == (26, 26)


# ---------------------------------------------------------------- fast routes equal their definitions
MASKINGS = ("none", "random", "dead_unit", "collapsed_layer")


def _masks(model: MLP, masking: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    masks = {n: np.ones(p.shape, dtype=bool) for n, p in model.params.items()}
    if masking == "random":
        masks = {n: rng.random(m.shape) < 0.6 for n, m in masks.items()}
    elif masking == "dead_unit":  # a hidden unit without inputs nor bias
        masks["layers.0.weight"][0, :] = False
        masks["layers.0.bias"][0] = False
    elif masking == "collapsed_layer":
        masks["layers.1.weight"][:] = False
    return masks


@given(
    act=st.sampled_from(ACTIVATIONS),
    loss=st.sampled_from(LOSSES),
    masking=st.sampled_from(MASKINGS),
    hidden=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    n=st.integers(1, 12),
    scale=st.sampled_from([0.1, 1.0, 4.0]),
    chunk=st.sampled_from([None, 40]),
    seed=st.integers(0, 2**16),
)
def test_fast_routes_equal_their_definitions(act, loss, masking, hidden, n, scale, chunk, seed):
    """gradient and hessian_diag ("exact", "ggn", "obd"): the default route equals the
    per-sample definition (fast=False) within FAST_BOUND of each array's condition scale,
    and both are exactly 0.0 at pruned entries; ``chunk`` forces small sample chunks.

    Every route is a mean over samples, so its condition scale is the mean of the
    samples' |contributions| (each sample's own definition), largest entry per array.
    Where nothing cancels across samples that is the array's largest entry; where the
    samples cancel (a dead unit makes every sample's hidden state equal, and the bias
    gradient below it sums to 1e-17 from terms of 0.1) it is the size of the terms."""
    rng = make_rng(seed)
    sizes = [3, *hidden, 3]
    model = MLP(sizes, act, loss=loss, seed=seed)
    model.set_masks(_masks(model, masking, rng))
    X = scale * rng.standard_normal((n, 3))
    y = rng.integers(0, 3, n) if loss == "cross_entropy" else rng.standard_normal((n, 3))
    routes = [lambda X=X, y=y, **kw: cv.gradient(model, X, y, **kw)]
    routes += [
        lambda m=m, X=X, y=y, **kw: cv.hessian_diag(model, X, y, m, **kw)
        for m in ("exact", "ggn", "obd")
    ]
    with mock.patch.object(cv, "_CHUNK_FLOATS", chunk or cv._CHUNK_FLOATS):
        for route in routes:
            fast, definition = route(), route(fast=False)
            terms = [route(X=X[i : i + 1], y=y[i : i + 1], fast=False) for i in range(n)]
            for name, mask in model.masks.items():
                scale = np.max(sum(np.abs(t[name]) for t in terms) / n, initial=0.0)
                assert scale >= np.max(np.abs(definition[name]), initial=0.0) * (1 - 1e-12)
                err = np.max(np.abs(fast[name] - definition[name]), initial=0.0)
                assert err <= cv.FAST_BOUND * scale, name
                assert np.all(fast[name][~mask] == 0.0) and np.all(definition[name][~mask] == 0.0)
