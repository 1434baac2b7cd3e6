"""Saliency scores: how important each weight is, under every pruning rule refprune knows.

Convention, for every function here: **higher score = more important = kept.**
A score is an array with its parameter's name and shape; turning scores into
masks (rounding, ties, scope, nesting) is ``refprune.masks``' job, never done here.

Two layers of functions:

* Array-level formulas (pure, no model): ``magnitude``, ``random_scores``,
  ``gradient``, ``taylor1``, ``obd``, ``taylor2``, ``taylor2_abs``, and the
  pieces of the model-level rules: ``obs_saliency``, ``obs_update``,
  ``obs_downdate``, ``grasp``, ``synflow``.
* Model-level: ``compute_scores(rule, model, X, y, ...)`` for every rule in
  ``RULES``, and ``obs_scores``, ``grasp_scores``, ``synflow_scores``.
  They never mutate the model.

Conventions of the model-level functions
----------------------------------------
* w are the effective parameters ``theta * M`` (``model.effective_params()``);
  g, h_ii and H v are derivatives of the mean training loss L(theta * M) in
  theta (``refprune.curvature``), so they are 0 at pruned entries.
* Pruned entries (mask False) get the score 0.0 under every rule, ``random``
  included. Selection never reads them (it ranks alive entries only), so the
  value is a convention for readability, not a signal.
* ``names`` (default ``model.weight_names()``: biases are scored only when
  named) chooses which parameters are returned, in that order.

The spec, with derivations, is ``docs/scores.md``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import numpy as np
import scipy.linalg

from . import curvature
from ._checks import choice, float_array, positive_int, real_number
from .mlp import MLP, check_model, flatten_params, unflatten_params
from .rng import make_rng

RULES = (
    "magnitude",
    "random",
    "gradient",
    "taylor1",
    "obd",
    "taylor2",
    "taylor2_abs",
    "obs",
    "grasp",
    "synflow",
)

#: Rules that need a batch (X, y): everything except magnitude, random and synflow.
DATA_RULES = ("gradient", "taylor1", "obd", "taylor2", "taylor2_abs", "obs", "grasp")
#: Rules that use the Hessian diagonal (``hessian_method``).
DIAG_RULES = ("obd", "taylor2", "taylor2_abs")

DEFAULT_OBS_DAMPING = 1e-4


# ====================================================================== array-level formulas
def magnitude(w: Any) -> np.ndarray:
    """Magnitude score.

    s_i = |w_i|. Higher score = kept: the smallest weights are pruned first.

    Janowsky, "Pruning versus clipping in neural networks", Phys. Rev. A 39,
    1989; Han, Pool, Tran and Dally, "Learning both weights and connections for
    efficient neural networks", NeurIPS 2015.

    Parameters
    ----------
    w : finite float array, any shape

    Returns
    -------
    float64 array of ``w.shape`` (|-0.0| = 0.0)
    """
    return cast(np.ndarray, np.abs(float_array(w, "w", allow_empty=True)))


def random_scores(shape: int | Sequence[int], seed: int | np.random.Generator) -> np.ndarray:
    """Seeded uniform random scores: the control every pruning paper compares against.

    s = U[0, 1) i.i.d. Higher score = kept, so a uniformly random subset of the
    requested size is pruned (e.g. the random-pruning baseline of Frankle and
    Carbin, "The Lottery Ticket Hypothesis", ICLR 2019).

    Draws: ``rng = refprune.rng.make_rng(seed)``; one call
    ``rng.random(shape)`` (float64, filled in C order).

    Parameters
    ----------
    shape : int or sequence of int >= 0
    seed : int >= 0 or numpy Generator (a Generator's draws continue from its state)

    Returns
    -------
    float64 array of ``shape``, values in [0, 1)
    """
    shape = _check_shape(shape)
    return make_rng(seed).random(shape)


def gradient(g: Any) -> np.ndarray:
    """Gradient-magnitude score.

    s_i = |g_i|, g = dL/dw. Higher score = kept: weights whose change the loss
    feels least, to first order per unit change, are pruned first. A baseline
    (it ignores how far removal moves the weight, which ``taylor1`` accounts for).

    Parameters
    ----------
    g : finite float array (the gradient), any shape

    Returns
    -------
    float64 array of ``g.shape``
    """
    return cast(np.ndarray, np.abs(float_array(g, "g", allow_empty=True)))


def taylor1(w: Any, g: Any) -> np.ndarray:
    """First-order Taylor saliency (connection sensitivity).

    s_i = |g_i w_i|: the magnitude of the first-order estimate -g_i w_i of the
    loss change when w_i is set to 0. Higher score = kept.

    Molchanov, Tyree, Karras, Aila and Kautz, "Pruning convolutional
    neural networks for resource efficient inference", ICLR 2017; Lee, Ajanthan
    and Torr, "SNIP: single-shot network pruning based on connection
    sensitivity", ICLR 2019 (SNIP divides by sum_j |g_j w_j|, which does not
    change the ranking and is not done here).

    Parameters
    ----------
    w, g : finite float arrays of the same shape (weights, gradient)

    Returns
    -------
    float64 array of that shape
    """
    w, g = _same_shape(("w", w), ("g", g))
    return cast(np.ndarray, np.abs(g * w))


def obd(w: Any, h: Any) -> np.ndarray:
    """Optimal Brain Damage saliency.

    s_i = 1/2 * h_ii * w_i**2, with h_ii the i-th diagonal entry of the Hessian
    of the training loss: the loss increase from setting w_i to 0 predicted by
    a diagonal quadratic model at a minimum (gradient term dropped). Higher
    saliency = more important = kept.

    LeCun, Denker and Solla, "Optimal Brain Damage", NeurIPS 2, 1990.

    Parameters
    ----------
    w, h : finite float arrays of the same shape (weights, Hessian diagonal)

    Returns
    -------
    float64 array of that shape (negative where h_ii < 0)
    """
    w, h = _same_shape(("w", w), ("h", h))
    return cast(np.ndarray, 0.5 * h * (w * w))


def taylor2(w: Any, g: Any, h: Any) -> np.ndarray:
    """Second-order Taylor estimate of the loss change from removing each weight (signed).

    s_i = dL_i = -g_i w_i + 1/2 h_ii w_i**2, the second-order Taylor expansion
    of L(w - w_i e_i) - L(w) with the Hessian reduced to its diagonal entry;
    exact when L is quadratic. Higher score = kept: a large positive dL_i means
    removal hurts; a negative dL_i means removal is predicted to *lower* the
    loss, so such weights are pruned first.

    LeCun, Denker and Solla, "Optimal Brain Damage", NeurIPS 2, 1990 (the
    expansion, before the gradient term is dropped at a minimum).

    Parameters
    ----------
    w, g, h : finite float arrays of the same shape (weights, gradient, Hessian diagonal)

    Returns
    -------
    float64 array of that shape
    """
    w, g, h = _same_shape(("w", w), ("g", g), ("h", h))
    return cast(np.ndarray, -g * w + 0.5 * h * (w * w))


def taylor2_abs(w: Any, g: Any, h: Any) -> np.ndarray:
    """Absolute second-order Taylor saliency.

    s_i = |-g_i w_i + 1/2 h_ii w_i**2| = |``taylor2``|: the size of the
    predicted loss change, whichever its sign. Higher score = kept.

    LeCun, Denker and Solla, NeurIPS 1990 (the expansion); the absolute value
    is taken as Molchanov et al., ICLR 2017, take it for the first-order term.

    Parameters
    ----------
    w, g, h : finite float arrays of the same shape

    Returns
    -------
    float64 array of that shape
    """
    return cast(np.ndarray, np.abs(taylor2(w, g, h)))


def obs_saliency(w: Any, hinv_diag: Any) -> np.ndarray:
    """Optimal Brain Surgeon saliency.

    L_q = w_q**2 / (2 [H^-1]_qq): the smallest increase of the quadratic model
    1/2 dw^T H dw reachable with w_q set to 0 and every other weight free to
    move (at a minimum, gradient 0). Higher saliency = kept.

    Hassibi and Stork, "Second order derivatives for network pruning: Optimal
    Brain Surgeon", NeurIPS 5, 1993.

    Parameters
    ----------
    w : finite float array
    hinv_diag : finite float array of the same shape, > 0 (diagonal of H^-1)

    Returns
    -------
    float64 array of that shape
    """
    w, d = _same_shape(("w", w), ("hinv_diag", hinv_diag))
    if np.any(d <= 0):
        raise ValueError("hinv_diag must be > 0 (H must be positive definite)")
    return cast(np.ndarray, (w * w) / (2.0 * d))


def obs_update(w: Any, hinv: Any, q: int) -> np.ndarray:
    """Optimal Brain Surgeon compensating update for removing weight q.

    dw = -(w_q / [H^-1]_qq) H^-1 e_q, the minimiser of 1/2 dw^T H dw subject to
    e_q^T (w + dw) = 0. After it, (w + dw)_q = 0 up to rounding (callers set it
    to exactly 0). Hassibi and Stork, NeurIPS 1993, eq. 5.

    Parameters
    ----------
    w : float array (P,)
    hinv : float array (P, P), symmetric, positive diagonal
    q : int in [0, P)

    Returns
    -------
    float64 array (P,): dw
    """
    w = float_array(w, "w", ndim=1)
    hinv = float_array(hinv, "hinv", ndim=2)
    q = _check_index(q, w.size, hinv)
    return cast(np.ndarray, -(w[q] / hinv[q, q]) * hinv[:, q])


def obs_downdate(hinv: Any, q: int) -> np.ndarray:
    """Inverse Hessian over the remaining weights after weight q is removed.

    With H^-1 = [[A, b], [b^T, c]] (b = column q without entry q, c = [H^-1]_qq),
    the inverse of H with row and column q deleted is A - b b^T / c (block
    inversion: the Schur complement). Returns that (P-1, P-1) matrix, rows and
    columns in the old order with q left out. Hassibi and Stork, NeurIPS 1993.

    Parameters
    ----------
    hinv : float array (P, P)
    q : int in [0, P)

    Returns
    -------
    float64 array (P-1, P-1)
    """
    hinv = float_array(hinv, "hinv", ndim=2)
    q = _check_index(q, hinv.shape[0], hinv)
    col = hinv[:, q]
    reduced = hinv - np.outer(col, hinv[q, :]) / hinv[q, q]
    keep = np.arange(hinv.shape[0]) != q
    return cast(np.ndarray, reduced[np.ix_(keep, keep)])


def grasp(w: Any, hg: Any) -> np.ndarray:
    """GraSP keep-score.

    s_i = w_i (H g)_i = -S_i, where S(-w) = -w * (H g) is the score of Wang et
    al., who remove the weights with the *highest* S (their removal reduces the
    gradient norm least, or increases it). Negating maps that onto "higher
    score = kept": removing the highest S is removing the lowest s. (Ties then
    follow ``refprune.masks``' rule on s.)

    Wang, Zhang and Grosse, "Picking winning tickets before training by
    preserving gradient flow", ICLR 2020.

    Parameters
    ----------
    w, hg : finite float arrays of the same shape (weights, Hessian-gradient product)

    Returns
    -------
    float64 array of that shape
    """
    w, hg = _same_shape(("w", w), ("hg", hg))
    return cast(np.ndarray, w * hg)


def synflow(weights: Sequence[Any]) -> list[np.ndarray]:
    """SynFlow scores of a chain of weight matrices (data-free).

    With |W_l| the absolute (masked) weights, layers l = 0 .. L-1, W_l of shape
    (out_l, in_l), an all-ones input and no bias or nonlinearity,
    R = 1^T |W_{L-1}| ... |W_0| 1 (the sum of the outputs) and

        s_l[i, j] = |dR/dW_l[i, j] * W_l[i, j]| = r_{l+1}[i] |W_l[i, j]| a_l[j]

    where a_0 = 1, a_{l+1} = |W_l| a_l (forward path sums) and r_L = 1,
    r_l = |W_l|^T r_{l+1} (backward path sums). Higher score = kept.

    Tanaka, Kunin, Yamins and Ganguli, "Pruning neural networks without any
    data by iteratively conserving synaptic flow", NeurIPS 2020 (eq. for R_SF;
    its official code also feeds |b| through ReLUs, which adds bias paths to R;
    this reference follows the paper's formula, biases excluded).

    Parameters
    ----------
    weights : sequence of finite float arrays, W_l of shape (out_l, in_l),
        with in_{l+1} = out_l

    Returns
    -------
    list of float64 arrays, one per matrix, of its shape
    """
    if isinstance(weights, np.ndarray) or not isinstance(weights, Sequence) or not weights:
        raise TypeError("weights must be a non-empty sequence of 2-D float arrays")
    A = [np.abs(float_array(w, f"weights[{l}]", ndim=2)) for l, w in enumerate(weights)]
    for l in range(1, len(A)):
        if A[l].shape[1] != A[l - 1].shape[0]:
            raise ValueError(
                f"weights[{l}] must have {A[l - 1].shape[0]} columns (the rows of "
                f"weights[{l - 1}]), got shape {A[l].shape}"
            )
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below, not warned
        a = [np.ones(A[0].shape[1])]
        for W in A:
            a.append(W @ a[-1])
        r = [np.ones(A[-1].shape[0])]
        for W in reversed(A):
            r.append(W.T @ r[-1])
        r.reverse()  # r[l] = backward sum at layer l
        out = [np.outer(r[l + 1], a[l]) * A[l] for l in range(len(A))]
    if not all(np.all(np.isfinite(s)) for s in out):
        raise ValueError(
            "synflow scores overflowed float64; the path sums of these weights are too large"
        )
    return out


# ====================================================================== model-level rules
def obs_scores(
    model: MLP,
    X: Any,
    y: Any,
    *,
    names: Sequence[str] | None = None,
    damping: float = DEFAULT_OBS_DAMPING,
) -> dict[str, np.ndarray]:
    """Optimal Brain Surgeon saliencies of every alive weight, from the damped full Hessian.

    L_q = w_q**2 / (2 [(H_FF + damping I)^-1]_qq) (``obs_saliency``), where F
    is the set of alive parameters (weights and biases, every layer) and
    H_FF the full Hessian (``refprune.curvature.full_hessian``) restricted to
    F: pruned entries are fixed at 0, not free to compensate. Higher = kept;
    pruned entries score 0.0. For tiny networks only (P <= 2000).

    Hassibi and Stork, "Second order derivatives for network pruning: Optimal
    Brain Surgeon", NeurIPS 5, 1993. Damping: their H^-1 recursion starts
    from (alpha I)^-1, a damped Hessian; here it is added to the exact one.

    Parameters
    ----------
    model : MLP
    X, y : a batch
    names : parameters to return (default the weight matrices)
    damping : float >= 0

    Returns
    -------
    dict name -> float64 array shaped like the parameter

    Raises
    ------
    ValueError if H_FF + damping I is not positive definite (OBS assumes a minimum).
    """
    names = _check_names(model, names)
    hinv, free = damped_inverse_hessian(model, X, y, damping)
    w = flatten_params(model.effective_params(), model)
    s = np.zeros(w.size)
    s[free] = obs_saliency(w[free], np.diag(hinv).copy())
    return _select(unflatten_params(s, model), names)


def damped_inverse_hessian(
    model: MLP, X: Any, y: Any, damping: float = DEFAULT_OBS_DAMPING
) -> tuple[np.ndarray, np.ndarray]:
    """(H_FF + damping I)^-1 over the alive parameters F, for Optimal Brain Surgeon.

    H is ``refprune.curvature.full_hessian`` (flat order of
    ``mlp.flatten_params``); ``damped_inverse`` does the rest.

    Returns
    -------
    hinv : float64 array (|F|, |F|)
    free : int64 array (|F|,), the flat indices of F, increasing

    Raises
    ------
    ValueError if the damped matrix is not positive definite.
    """
    check_model(model)
    damping = real_number(damping, "damping", low=0.0)
    free = np.flatnonzero(flatten_params(model.masks, model))
    return damped_inverse(curvature.full_hessian(model, X, y), free, damping), free


def damped_inverse(H: np.ndarray, free: np.ndarray, damping: float) -> np.ndarray:
    """(A + damping I)^-1 with A = (H + H^T) / 2 restricted to the rows and columns ``free``.

    Inverted by Cholesky; ValueError if the damped matrix is not positive definite.
    """
    A = H[np.ix_(free, free)]
    A = 0.5 * (A + A.T) + damping * np.eye(free.size)
    try:
        factor = scipy.linalg.cho_factor(A, lower=True)
    except np.linalg.LinAlgError:
        raise ValueError(
            f"the Hessian over the alive parameters plus damping * I is not positive "
            f"definite (damping={damping}); Optimal Brain Surgeon assumes a minimum: "
            f"train further or increase damping"
        ) from None
    return cast(np.ndarray, scipy.linalg.cho_solve(factor, np.eye(free.size)))


def grasp_scores(
    model: MLP, X: Any, y: Any, *, names: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """GraSP keep-scores s = w * (H g) (``grasp``) of the parameters ``names``.

    g is the gradient of the mean loss restricted to ``names`` (zero elsewhere:
    the prunable parameters are the theta of the paper, as in its official code,
    which uses the weight matrices) and H g the exact Hessian-vector product
    (``refprune.curvature.hvp``). The paper's score is S = -w * (H g), highest
    removed; s = -S, higher = kept. Pruned entries score 0.0.

    Wang, Zhang and Grosse, "Picking winning tickets before training by
    preserving gradient flow", ICLR 2020. (Their code also divides the logits by
    a temperature of 200 and averages over several batches; this reference
    scores the model's own loss on the batch given.)

    Returns
    -------
    dict name -> float64 array shaped like the parameter
    """
    names = _check_names(model, names)
    g = curvature.gradient(model, X, y)
    v = {n: (g[n] if n in names else np.zeros_like(g[n])) for n in model.params}
    hg = curvature.hvp(model, X, y, v)
    w = model.effective_params()
    return _zero_pruned(model, {n: grasp(w[n], hg[n]) for n in names})


def synflow_scores(model: MLP, *, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """One round of SynFlow scores on the model's masked weights (``synflow``).

    s_l[i, j] = r_{l+1}[i] |W_l[i, j] M_l[i, j]| a_l[j] with the path sums of the
    absolute masked weights (see ``synflow``); data-free. Higher = kept. The
    iterative procedure of the paper (n rounds, density rho^(k/n) after round k)
    is ``refprune.rescoring.synflow_prune``.

    Tanaka, Kunin, Yamins and Ganguli, NeurIPS 2020.

    Parameters
    ----------
    model : MLP
    names : weight-matrix names (default all); biases have no SynFlow score.

    Returns
    -------
    dict name -> float64 array shaped like the weight matrix
    """
    names = _check_names(model, names)
    bad = [n for n in names if n not in model.weight_names()]
    if bad:
        raise ValueError(f"synflow scores weight matrices only; names has {bad}")
    w = model.effective_params()
    s = synflow([w[n] for n in model.weight_names()])
    return _zero_pruned(model, {n: s[model.weight_names().index(n)] for n in names})


def compute_scores(
    rule: str,
    model: MLP,
    X: Any = None,
    y: Any = None,
    *,
    names: Sequence[str] | None = None,
    seed: int | np.random.Generator | None = None,
    hessian_method: str = "exact",
    **options: Any,
) -> dict[str, np.ndarray]:
    """Scores of the parameters ``names`` of ``model`` under ``rule``. Higher score = kept.

    ==============  ====================================================  ==========================
    rule            score                                                 source
    ==============  ====================================================  ==========================
    "magnitude"     |w|                                                   Han et al. 2015
    "random"        U[0, 1), seeded                                       control
    "gradient"      |g|                                                   baseline
    "taylor1"       |g w|                                                 SNIP (Lee et al. 2019),
                                                                          Molchanov et al. 2017
    "obd"           1/2 h w**2                                            LeCun et al. 1990
    "taylor2"       -g w + 1/2 h w**2 (signed estimated loss change)      LeCun et al. 1990
    "taylor2_abs"   |-g w + 1/2 h w**2|                                   LeCun et al. 1990
    "obs"           w_q**2 / (2 [(H + damping I)^-1]_qq)                  Hassibi and Stork 1993
    "grasp"         w (H g)  (= minus the paper's score)                  Wang et al. 2020
    "synflow"       |dR/dw w|, R = 1^T prod |W| 1 (one round)             Tanaka et al. 2020
    ==============  ====================================================  ==========================

    w = theta * M (effective parameters); g, h = diag H and H g are derivatives
    of the mean loss L(theta * M) on (X, y) in theta (``refprune.curvature``).
    Pruned entries get 0.0 under every rule (selection ignores them). The model
    is never mutated.

    Parameters
    ----------
    rule : one of ``RULES``
    model : MLP
    X, y : the batch; required by the rules in ``DATA_RULES``, not used by
        "magnitude", "random" and "synflow".
    names : sequence of parameter names, default ``model.weight_names()``
        (biases scored only when named). The result has these keys, in order.
    seed : int or Generator; required by "random" and by
        ``hessian_method="hutchinson"``; ignored by the rules that draw nothing
        (so one call shape serves every rule).
        Draws of "random": ``rng = make_rng(seed)``, then for each name in
        ``names`` order one call ``rng.random(shape)`` (pruned entries draw too).
    hessian_method : {"exact", "ggn", "obd", "hutchinson"}
        Hessian diagonal of "obd", "taylor2", "taylor2_abs"
        (``refprune.curvature.hessian_diag``).
    **options
        ``n_samples`` (int >= 1): Hutchinson probes, with hessian_method="hutchinson".
        ``damping`` (float >= 0, default 1e-4): "obs" only.

    Returns
    -------
    dict name -> float64 array of the parameter's shape
    """
    choice(rule, "rule", RULES)
    names = _check_names(model, names)
    choice(hessian_method, "hessian_method", curvature.METHODS)
    hutch = rule in DIAG_RULES and hessian_method == "hutchinson"
    allowed = {"obs": {"damping"}}.get(rule, {"n_samples"} if hutch else set())
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(
            f"unknown option(s) {unknown} for rule {rule!r}"
            f"{f' with hessian_method={hessian_method!r}' if rule in DIAG_RULES else ''}; "
            f"accepted: {sorted(allowed) or 'none'}"
        )
    if rule in DATA_RULES and (X is None or y is None):
        raise ValueError(f"rule {rule!r} needs data: X and y must be given")

    if rule == "magnitude":
        w = model.effective_params()
        return _zero_pruned(model, {n: magnitude(w[n]) for n in names})
    if rule == "random":
        if seed is None:
            raise ValueError("seed must be given for rule='random' (draws are reproducible)")
        rng = make_rng(seed)
        return _zero_pruned(model, {n: random_scores(model.params[n].shape, rng) for n in names})
    if rule == "synflow":
        return synflow_scores(model, names=names)
    if rule == "obs":
        return obs_scores(
            model, X, y, names=names, damping=options.get("damping", DEFAULT_OBS_DAMPING)
        )
    if rule == "grasp":
        return grasp_scores(model, X, y, names=names)

    w = model.effective_params()
    g = curvature.gradient(model, X, y)
    if rule == "gradient":
        return _zero_pruned(model, {n: gradient(g[n]) for n in names})
    if rule == "taylor1":
        return _zero_pruned(model, {n: taylor1(w[n], g[n]) for n in names})
    if hutch:
        h = curvature.hessian_diag(
            model, X, y, "hutchinson", n_samples=options.get("n_samples"), seed=seed
        )
    else:
        h = curvature.hessian_diag(model, X, y, hessian_method)
    formula: Callable[[str], np.ndarray] = {
        "obd": lambda n: obd(w[n], h[n]),
        "taylor2": lambda n: taylor2(w[n], g[n], h[n]),
        "taylor2_abs": lambda n: taylor2_abs(w[n], g[n], h[n]),
    }[rule]
    return _zero_pruned(model, {n: formula(n) for n in names})


# ====================================================================== helpers
def _check_names(model: Any, names: Sequence[str] | None) -> list[str]:
    check_model(model)
    return cast(list[str], model.check_names(names))


def _zero_pruned(model: MLP, scores: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The convention: exactly 0.0 at pruned entries."""
    return {n: np.where(model.masks[n], s, 0.0) for n, s in scores.items()}


def _select(d: Mapping[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    return {n: d[n] for n in names}


def _same_shape(*named: tuple[str, Any]) -> list[np.ndarray]:
    arrays = [float_array(v, name, allow_empty=True) for name, v in named]
    for (name, _), a in zip(named[1:], arrays[1:]):
        if a.shape != arrays[0].shape:
            raise ValueError(
                f"{name} must have the shape of {named[0][0]} {arrays[0].shape}, got {a.shape}"
            )
    return arrays


def _check_shape(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence):
        raise TypeError(f"shape must be an int or a sequence of ints, got {type(shape).__name__}")
    return tuple(positive_int(s, "shape[i]", minimum=0) for s in shape)


def _check_index(q: Any, n: int, hinv: np.ndarray) -> int:
    if hinv.shape != (n, n):
        raise ValueError(f"hinv must be square with side {n}, got shape {hinv.shape}")
    if isinstance(q, bool) or not isinstance(q, numbers.Integral):
        raise TypeError(f"q must be an integer, got {type(q).__name__}")
    if not 0 <= q < n:  # type: ignore[operator]
        raise ValueError(f"q must be in [0, {n}), got {q}")
    if not hinv[q, q] > 0:
        raise ValueError(f"hinv[q, q] must be > 0 (H positive definite), got {hinv[q, q]}")
    return int(q)
