"""The backend protocol: what an implementation may provide to be checked against refprune.

A *backend* is any Python object. Each operation below is an optional method
of that object, with NumPy arrays in and out. The runner calls a method only
with keyword arguments, named exactly as in the signatures below, and compares
what it returns with the reference. A method that is missing, or that raises
``NotProvided`` for a particular argument (say, a Hessian-diagonal method the
backend does not implement), is reported as "not provided": it is never a pass
and never a failure. Subclassing ``Backend`` is optional; it documents every
operation and makes each one "not provided" until overridden.

Conventions shared by every operation
-------------------------------------
* Arrays are ``numpy.ndarray``: floats are float64, masks are bool
  (True = alive = kept), labels are int64. A backend may compute in another
  precision but returns float64 arrays; the tolerances of the golden cases
  say how close it must be.
* Higher score = more important = kept, for every scoring rule.
* ``params`` is a dict ``name -> array`` describing a multilayer perceptron
  with L layers: ``layers.{l}.weight`` of shape (out_l, in_l) and
  ``layers.{l}.bias`` of shape (out_l,) for l = 0 .. L-1. Layer l computes
  z_{l+1} = a_l @ W_l.T + b_l; hidden layers apply ``activation`` (one of
  "relu", "tanh", "sigmoid", "identity"; ReLU'(0) = 0), the last layer is
  linear. ``loss`` is "cross_entropy" (mean over the batch of
  -log softmax(z)[y], ``y`` int64 labels of shape (N,)) or "mse" (mean over
  all N*K entries of (f - t)**2, ``y`` float64 targets of shape (N, K)).
* The *flat parameter order* (used by ``full_hessian`` and by probe vectors)
  is the concatenation of the C-order ravel of each parameter in the order
  layers.0.weight, layers.0.bias, layers.1.weight, layers.1.bias, ...
* A dict returned for ``params`` has the same names and shapes as ``params``.
* Operations never modify their arguments.

See ``docs/conformance.md`` for how results are compared and how to run the
suite, and ``docs/golden_format.md`` for the golden files' format.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

Params = Mapping[str, np.ndarray]


class NotProvided(Exception):
    """Raised by a backend method for an argument value it does not support.

    The runner reports the check as "not provided" instead of failed.
    """


@dataclass(frozen=True)
class Operation:
    """One operation of the protocol: its family, the name of its result, and a summary."""

    name: str
    family: str
    output: str
    summary: str


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in [
        Operation(
            "fraction_to_count",
            "masks",
            "count",
            "count = rounding(fraction * n) with the float64 product",
        ),
        Operation(
            "keep_top_k",
            "masks",
            "mask",
            "keep the k highest scores; ties: lower flat C-order index kept",
        ),
        Operation(
            "select_masks",
            "masks",
            "masks",
            "prune a fraction of the alive entries, layer-wise or globally",
        ),
        Operation(
            "prune_units",
            "masks",
            "masks",
            "structured: remove whole hidden units by the norm of their incoming weights",
        ),
        Operation(
            "n_m_mask",
            "masks",
            "mask",
            "N:M: keep n of every m consecutive entries along the last axis",
        ),
        Operation(
            "profile_mask",
            "profiles",
            "masks",
            "keep-masks computed the way the claimed library computes them",
        ),
        Operation("scores", "scores", "scores", "saliency of every parameter under a named rule"),
        Operation(
            "obs_prune",
            "scores",
            "pruned",
            "Optimal Brain Surgeon: remove weights one at a time with the compensating update",
        ),
        Operation(
            "synflow_prune", "scores", "masks", "iterative SynFlow pruning to a density (data-free)"
        ),
        Operation("loss_value", "curvature", "loss", "mean loss over the batch"),
        Operation("gradient", "curvature", "gradient", "gradient of the mean loss"),
        Operation("hvp", "curvature", "hvp", "Hessian-vector product H v"),
        Operation(
            "full_hessian", "curvature", "hessian", "the full Hessian in flat parameter order"
        ),
        Operation("hessian_diag", "curvature", "diag", "Hessian diagonal: exact, ggn or obd"),
        Operation(
            "hutchinson_diag",
            "curvature",
            "diag",
            "Hutchinson estimate mean_s(v_s * H v_s) for given probe vectors",
        ),
        Operation(
            "schedule",
            "schedules",
            "schedule",
            "steps, exact targets and integer alive counts of a pruning schedule",
        ),
        Operation(
            "rounds_to_density",
            "schedules",
            "rounds",
            "fewest geometric rounds that reach a target density",
        ),
        Operation(
            "hard_threshold", "sparse_approx", "u", "best k-term approximation in the 2-norm"
        ),
        Operation("soft_threshold", "sparse_approx", "u", "proximal operator of lam * ||u||_1"),
        Operation(
            "hard_threshold_prox", "sparse_approx", "u", "proximal operator of lam * ||u||_0"
        ),
        Operation(
            "sparse_approx_exact",
            "sparse_approx",
            "u",
            "exact k-sparse approximation: non-negative, weighted norm, or quadratic norm",
        ),
        Operation("ista", "sparse_approx", "x", "ISTA iterate for 1/2 ||A x - y||^2 + lam ||x||_1"),
        Operation("iht", "sparse_approx", "x", "IHT iterate for ||A x - y||^2 with ||x||_0 <= k"),
        Operation(
            "imp_round", "lottery", "result", "one IMP round: prune trained weights, then rewind"
        ),
        Operation(
            "imp",
            "lottery",
            "trace",
            "a full-batch IMP run: per-round masks, rewound weights and losses",
        ),
        Operation(
            "sparse_forward",
            "sparse_execution",
            "logits",
            "outputs of the pruned MLP computed in the backend's own sparse format",
        ),
        Operation(
            "sparse_train_step",
            "sparse_execution",
            "step",
            "one masked SGD step through the backend's own sparse format",
        ),
        Operation(
            "train_steps",
            "training",
            "trajectory",
            "full-batch masked SGD steps (momentum, Nesterov, weight decay, pruning, rewinding)",
        ),
        Operation(
            "random_masks",
            "controls",
            "masks",
            "random masks with exactly the alive count of each given mask",
        ),
        Operation(
            "reinit",
            "controls",
            "params",
            "fresh initial weights of the same architecture, the masks kept",
        ),
    ]
}

FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(op.family for op in OPERATIONS.values()))


class Backend:
    """Base class documenting every operation; each raises ``NotProvided`` until overridden.

    Subclassing is optional: the runner only looks for methods with these names.
    """

    name = "unnamed backend"

    # ------------------------------------------------------------------ masks
    def fraction_to_count(self, *, fraction: float, n: int, rounding: str) -> int:
        """Number of items a fraction of ``n`` stands for.

        count = rounding(fraction * n), the product taken in float64;
        ``rounding`` is "round-half-even", "floor" or "ceil". Returns an int in [0, n].
        """
        raise NotProvided

    def keep_top_k(self, *, scores: np.ndarray, k: int) -> np.ndarray:
        """Bool mask of ``scores.shape`` with exactly ``k`` True: the k highest scores.

        Ties: among equal scores the lower flat C-order index is kept; -0.0 == 0.0.
        """
        raise NotProvided

    def select_masks(
        self,
        *,
        scores: dict[str, np.ndarray],
        masks: dict[str, np.ndarray],
        fraction: float,
        scope: str,
        rate_multipliers: dict[str, float] | None,
        rounding: str,
    ) -> dict[str, np.ndarray]:
        """New masks pruning ``fraction`` of the entries still alive.

        ``scores`` holds the tensors eligible for pruning (name -> scores, any shapes,
        in this order), ``masks`` their current masks. Only alive entries take part:
        a pruned entry's score is never read and it is never revived (new <= old). A
        group with n_alive alive entries loses n_prune = fraction_to_count(f, n_alive,
        rounding) of them, the lowest scores, and keeps keep_top_k of the alive scores
        taken in C order (ties: the earlier alive entry kept).

        * scope "layer": each tensor t is a group, f = fraction * rate_multipliers.get(t, 1).
        * scope "global": the tensors with multiplier 1 (all, when ``rate_multipliers``
          is None) form one pool, their alive entries concatenated in the order of
          ``scores``' keys, f = fraction; a tensor with another multiplier m is pruned
          on its own at fraction * m (0 leaves it untouched).

        Returns a dict with the keys of ``scores``.
        """
        raise NotProvided

    def prune_units(
        self,
        *,
        params: dict[str, np.ndarray],
        masks: dict[str, np.ndarray],
        fraction: float,
        norm: str,
        rounding: str,
    ) -> dict[str, np.ndarray]:
        """Masks after removing whole hidden units (structured pruning).

        ``masks`` are the current masks of every parameter. In every hidden layer l
        (the outputs of layers.{l}, l < L-1), unit i is scored by the norm of its
        masked incoming weights, x_j = W_l[i, j] * M_l[i, j] (``norm`` "l1": the sum of
        |x_j|; "l2": the square root of the sum of the float64 squares x_j * x_j; the
        sums taken in index order j = 0, 1, ..., as the reference adds the rows of the
        suite, which have at most 5 entries; the bias is not part of it). A unit is
        alive unless its row, bias and outgoing column are all pruned. The scores and
        the alive units of every layer are taken from ``masks`` as given, before
        anything is removed (a unit whose row is emptied by the removals in layer l-1
        still counts as alive in layer l). fraction_to_count(fraction, alive units,
        rounding) alive units with the lowest norms go (ties: the lower unit index
        kept). Removing unit i masks row i of layers.{l}.weight, entry i of
        layers.{l}.bias and column i of layers.{l+1}.weight. A layer left with no unit
        is returned as such. Returns masks for every parameter.
        """
        raise NotProvided

    def n_m_mask(
        self, *, scores: np.ndarray, n: int, m: int, alive: np.ndarray | None
    ) -> np.ndarray:
        """N:M semi-structured mask: in each run of ``m`` consecutive entries along the
        last axis, keep the ``n`` highest alive scores (ties: the lower index kept);
        ``m`` divides ``scores.shape[-1]``. ``alive`` (None: all alive) is the current
        mask: dead entries stay dead, and a run with fewer than n alive keeps them all."""
        raise NotProvided

    # --------------------------------------------------------------- profiles
    def profile_mask(
        self,
        *,
        scores: dict[str, np.ndarray],
        amount: float | int,
        alive: dict[str, np.ndarray] | None,
        scope: str,
        ignore: list[str],
    ) -> dict[str, np.ndarray]:
        """Keep-masks computed the way the library the backend follows computes them.

        What ``amount`` means, how the count is rounded and in which precision, and
        how ties go are the conventions of the profile the backend claims
        (``--profile``; ``conformance.conventions.PROFILES``, documented in
        docs/profiles.md): ``Profile.keep_masks(scores, amount, alive=alive,
        scope=scope, ignore=ignore)``. ``alive`` is the current mask (None: all
        alive); tensors in ``ignore`` are carried along unpruned. An ``amount``
        given as an int is an int (torch reads it as a count).
        """
        raise NotProvided

    # ----------------------------------------------------------------- scores
    def scores(
        self,
        *,
        rule: str,
        params: dict[str, np.ndarray],
        X: np.ndarray | None,
        y: np.ndarray | None,
        activation: str,
        loss: str,
        masks: dict[str, np.ndarray] | None,
        options: dict[str, Any],
    ) -> dict[str, np.ndarray]:
        """Saliency under ``rule`` (higher = kept) of the network ``params`` with ``masks``.

        w = params * masks (the effective weights); g, h = diag H and H g are
        derivatives of the mean loss L(params * masks) in params, so they are 0 at
        pruned entries, and every rule scores a pruned entry exactly 0.0.

        ==============  ==============================================================
        "magnitude"     |w|
        "random"        U[0, 1): rng = Generator(PCG64(options["seed"])), one
                        rng.random(shape) per scored name in order (NumPy's stream)
        "gradient"      |g|
        "taylor1"       |g w|
        "obd"           1/2 h w**2, h = hessian_diag(options["hessian_method"])
        "taylor2"       -g w + 1/2 h w**2 (signed: removal that lowers the loss goes first)
        "taylor2_abs"   |-g w + 1/2 h w**2|
        "obs"           w_q**2 / (2 [(H_FF + options["damping"] I)^-1]_qq), F = alive
                        parameters (weights and biases), H symmetrised as (H + H^T)/2
        "grasp"         w (H g), g restricted to the scored names (minus the paper's score)
        "synflow"       |dR/dw w|, R = 1^T prod_l |W_l * M_l| 1 (one round)
        ==============  ==============================================================

        ``options``: "names" (scored parameters, in order; default the weight
        matrices), "hessian_method" ("exact", "ggn" or "obd"; default "exact"),
        "damping" ("obs", default 1e-4), "seed" ("random"). ``X`` and ``y`` are None
        for the data-free rules (magnitude, random, synflow); ``masks`` None means all
        alive. Returns a dict with the scored names. Raise ``NotProvided`` for rules
        the backend does not implement.
        """
        raise NotProvided

    def obs_prune(
        self,
        *,
        params: dict[str, np.ndarray],
        X: np.ndarray,
        y: np.ndarray,
        activation: str,
        loss: str,
        masks: dict[str, np.ndarray] | None,
        n_remove: int,
        damping: float,
    ) -> dict[str, dict[str, np.ndarray]]:
        """Optimal Brain Surgeon, one weight at a time (Hassibi and Stork 1993).

        F = alive parameters (weights and biases), Hinv = (H_FF + damping I)^-1 with H
        the full Hessian at the starting weights (symmetrised), computed once. Repeat
        ``n_remove`` times: among the alive weight-matrix entries (candidates in the
        flat parameter order) remove q with the lowest w_q**2 / (2 Hinv_qq) (equal
        saliencies: the later candidate goes); update every free parameter
        w <- w - (w_q / Hinv_qq) Hinv e_q, set w_q = 0 and mask it; downdate
        Hinv <- Hinv - Hinv e_q e_q^T Hinv / Hinv_qq and drop row and column q.
        Returns {"params": the updated parameters (pruned entries 0.0), "masks": the
        masks of every parameter}.
        """
        raise NotProvided

    def synflow_prune(
        self,
        *,
        params: dict[str, np.ndarray],
        masks: dict[str, np.ndarray] | None,
        density: float,
        iterations: int,
        rounding: str,
    ) -> dict[str, np.ndarray]:
        """Iterative SynFlow (Tanaka et al. 2020), data-free, over every weight matrix.

        n0 = alive weights at the start; round k = 1 .. ``iterations`` scores the
        current masked weights with one round of SynFlow and prunes globally (pool in
        layer order, C order, ties: the earlier entry kept) until the number pruned
        since the start is fraction_to_count(1 - density ** (k / iterations), n0,
        rounding). Returns the final masks of the weight matrices.
        """
        raise NotProvided

    # -------------------------------------------------------------- curvature
    def loss_value(
        self,
        *,
        params: dict[str, np.ndarray],
        X: np.ndarray,
        y: np.ndarray,
        activation: str,
        loss: str,
    ) -> float:
        """Mean loss of the network over the batch."""
        raise NotProvided

    def gradient(
        self,
        *,
        params: dict[str, np.ndarray],
        X: np.ndarray,
        y: np.ndarray,
        activation: str,
        loss: str,
    ) -> dict[str, np.ndarray]:
        """Gradient of the mean loss with respect to every parameter."""
        raise NotProvided

    def hvp(
        self,
        *,
        params: dict[str, np.ndarray],
        X: np.ndarray,
        y: np.ndarray,
        v: dict[str, np.ndarray],
        activation: str,
        loss: str,
    ) -> dict[str, np.ndarray]:
        """Exact Hessian-vector product H v of the mean loss (``v`` shaped like ``params``)."""
        raise NotProvided

    def full_hessian(
        self,
        *,
        params: dict[str, np.ndarray],
        X: np.ndarray,
        y: np.ndarray,
        activation: str,
        loss: str,
    ) -> np.ndarray:
        """The P x P Hessian of the mean loss in the flat parameter order."""
        raise NotProvided

    def hessian_diag(
        self,
        *,
        params: dict[str, np.ndarray],
        X: np.ndarray,
        y: np.ndarray,
        activation: str,
        loss: str,
        method: str,
    ) -> dict[str, np.ndarray]:
        """Diagonal of the Hessian of the mean loss, biases included.

        ``method``: "exact" (the true diagonal), "ggn" (diagonal of the generalised
        Gauss-Newton matrix, sigma'' terms dropped) or "obd" (the LeCun-Denker-Solla /
        Becker-LeCun recursion that keeps only diagonal terms while propagating).
        """
        raise NotProvided

    def hutchinson_diag(
        self,
        *,
        params: dict[str, np.ndarray],
        X: np.ndarray,
        y: np.ndarray,
        activation: str,
        loss: str,
        probes: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """Hutchinson's estimate mean_s (v_s * H v_s) of the Hessian diagonal.

        ``probes`` has shape (S, P): S probe vectors in the flat parameter order (the
        reference draws Rademacher entries; here they are given, so no random stream
        has to be reproduced).
        """
        raise NotProvided

    # -------------------------------------------------------------- schedules
    def schedule(
        self, *, name: str, options: dict[str, Any], n: int, rounding: str
    ) -> dict[str, Any]:
        """A pruning schedule's steps, exact targets and integer counts for ``n`` weights.

        ``name`` and ``options``: "geometric" (alpha, rounds, start), "one_shot"
        (sparsity, step), "cubic" and "linear" (initial_sparsity, final_sparsity,
        t0, dt, n_steps), "constant" (sparsity, t0, dt, n_steps); see
        docs/conformance.md for the formulas, evaluated with float64 operations in
        the documented order. Returns {"kind": "relative" | "absolute", "steps": int64
        array, "values": float64 array (relative: fraction of the alive pruned at each
        step; absolute: target sparsity of the original weights), "densities": exact
        target densities, "alive_counts": int64 array of the weights alive after each
        step (relative: k_j = k_{j-1} - fraction_to_count(f_j, k_{j-1}, rounding);
        absolute: k_j = n - fraction_to_count(s_j, n, rounding))}.
        """
        raise NotProvided

    def rounds_to_density(
        self, *, target_density: float, alpha: float, n: int | None, rounding: str
    ) -> int:
        """Fewest geometric rounds S with density <= ``target_density``: with ``n`` None the
        float64 product (1 - alpha)^S (multiplied left to right), otherwise the integer
        counts k_S / n of ``schedule("geometric")``."""
        raise NotProvided

    # ---------------------------------------------------------- sparse approx
    def hard_threshold(self, *, w: np.ndarray, k: int) -> np.ndarray:
        """Best k-term approximation of ``w`` in the Euclidean norm (magnitude pruning).

        support = keep_top_k(|w|, k) (ties: the lower flat index kept); u = w on the
        support (bit for bit, a kept -0.0 stays -0.0), +0.0 elsewhere.
        """
        raise NotProvided

    def soft_threshold(self, *, w: np.ndarray, lam: float) -> np.ndarray:
        """Proximal operator of lam * ||.||_1: u_i = w_i - copysign(lam, w_i) where |w_i| > lam,
        +0.0 elsewhere (the tie |w_i| = lam included)."""
        raise NotProvided

    def hard_threshold_prox(self, *, w: np.ndarray, lam: float) -> np.ndarray:
        """Proximal operator of lam * ||.||_0: u_i = w_i if w_i**2 > 2 lam (decided exactly on the
        float64 values, not after rounding w_i**2), +0.0 otherwise (the tie goes to 0)."""
        raise NotProvided

    def sparse_approx_exact(
        self, *, problem: str, w: np.ndarray, k: int, d: np.ndarray | None, H: np.ndarray | None
    ) -> np.ndarray:
        """Exact minimiser u of a k-sparse approximation problem where magnitude selection is
        not always optimal.

        * "nonnegative": min ||u - w||_2 with u >= 0: support = keep_top_k(max(w, 0), k),
          u = max(w, 0) on it.
        * "weighted": min sum_i d_i (u_i - w_i)^2: support = keep_top_k(d * (w * w), k) (all
          d_i equal: the support of hard_threshold), u = w on it.
        * "quadratic": min (u - w)^T H (u - w), kept values re-optimised (u_S = w_S +
          H_SS^-1 H_SP w_P), over every support of size k in itertools.combinations order,
          the first with the smallest cost; ``w`` 1-D, ``H`` symmetric positive definite.

        Unused arguments are None. Entries off the support are +0.0.
        """
        raise NotProvided

    def ista(
        self, *, A: np.ndarray, y: np.ndarray, lam: float, step: float, n_iter: int
    ) -> np.ndarray:
        """ISTA for 1/2 ||A x - y||^2 + lam ||x||_1: from x = 0, ``n_iter`` times
        x <- soft_threshold(x - step * A^T (A x - y), step * lam), evaluated in that order."""
        raise NotProvided

    def iht(self, *, A: np.ndarray, y: np.ndarray, k: int, step: float, n_iter: int) -> np.ndarray:
        """IHT for ||A x - y||^2 with ||x||_0 <= k: from x = 0, ``n_iter`` times
        x <- hard_threshold(x - step * A^T (A x - y), k), evaluated in that order."""
        raise NotProvided

    # ---------------------------------------------------------------- lottery
    def imp_round(
        self,
        *,
        trained: dict[str, np.ndarray],
        rewind_params: dict[str, np.ndarray],
        masks: dict[str, np.ndarray],
        fraction: float,
        scope: str,
        rate_multipliers: dict[str, float] | None,
        rounding: str,
    ) -> dict[str, dict[str, np.ndarray]]:
        """One round of iterative magnitude pruning, given the trained weights.

        New masks = ``select_masks`` of the weight matrices with scores |trained * masks|,
        the round's ``fraction`` of the alive weights, ``scope``, ``rate_multipliers`` and
        ``rounding``; biases are never pruned. Then rewinding: every parameter takes the
        value of ``rewind_params`` under the new masks (pruned entries 0.0). ``rewind_params`` is
        the initial weights (rewinding to init), the weights after K steps (late
        rewinding) or the trained weights themselves (learning-rate rewinding and
        fine-tuning keep them). Returns {"masks": masks of every parameter, "params":
        the rewound parameters}.
        """
        raise NotProvided

    def imp(
        self,
        *,
        params: dict[str, np.ndarray],
        X: np.ndarray,
        y: np.ndarray,
        activation: str,
        loss: str,
        options: dict[str, Any],
    ) -> dict[str, Any]:
        """Iterative magnitude pruning with rewinding and full-batch SGD (no random draws).

        ``params`` are the initial weights w0 (all alive). ``options``: "rounds",
        "alpha" (fraction of the alive weight-matrix entries pruned per round),
        "scope", "rate_multipliers", "rewind" ("init", "step:K", "lr" or "finetune"),
        "epochs" (full-batch updates per round), "lr", "momentum", "milestones" and
        "gamma" (learning rate lr * gamma^(number of milestones <= t) at update t).
        Optional "sparsities" [s_1, ..., s_R] (non-decreasing): an absolute schedule
        (one-shot, cubic) instead of "rounds" and "alpha": round r prunes each group
        (scope "global": the weight matrices with multiplier 1 as one pool, then every
        other matrix alone; scope "layer": every matrix alone) down to
        n - fraction_to_count(s_r * m, n) alive entries, n its entries in all, m its
        multiplier (1 for the pool), by the lowest |w| among its alive entries.
        Round 0 trains w0; round r >= 1 prunes |w| of the trained weights, rewinds,
        resets the momentum and trains again (docs/conformance.md, family lottery).
        Returns {"masks": list over rounds 0..R of the masks of every parameter,
        "rewound": list over rounds 0..R of the parameters each round starts training
        from, "final": the parameters after the last round, "train_loss": float64 array
        of the training loss after each round}.
        """
        raise NotProvided

    # ------------------------------------------------------- sparse execution
    def sparse_forward(
        self,
        *,
        params: dict[str, np.ndarray],
        masks: dict[str, np.ndarray],
        X: np.ndarray,
        activation: str,
    ) -> np.ndarray:
        """Outputs f(X) (N, K) of the pruned MLP, run on the backend's own sparse format.

        The function is the dense masked network's: z_{l+1} = a_l (W_l * M_l)^T +
        b_l * Mb_l, hidden activation, last layer linear; ``masks`` holds a mask for
        every parameter. How the backend stores the pruned layers (CSR, COO, blocks, a
        GPU kernel) is its own business; only the sums may run in another order
        (docs/conformance.md, family sparse_execution, for the tolerance). Whatever
        ``params`` holds at a pruned entry is never read.
        """
        raise NotProvided

    def sparse_train_step(
        self,
        *,
        params: dict[str, np.ndarray],
        masks: dict[str, np.ndarray],
        X: np.ndarray,
        y: np.ndarray,
        activation: str,
        loss: str,
        lr: float,
        weight_decay: float,
    ) -> dict[str, Any]:
        """One masked SGD step on the batch (X, y), through the backend's own sparse format.

        With w the effective parameters (params * masks) and g the gradient of the mean
        loss of the masked network: d = g + weight_decay * w; w' = w - lr * (d * M).
        Every alive entry is updated, an alive weight whose value is 0.0 (or -0.0)
        included; every pruned entry of the result is +0.0. Returns {"params": w'
        (every parameter), "loss": the mean loss before the step (float)}.
        """
        raise NotProvided

    # --------------------------------------------------------------- training
    def train_steps(
        self,
        *,
        params: dict[str, np.ndarray],
        masks: dict[str, np.ndarray] | None,
        X: np.ndarray,
        y: np.ndarray,
        activation: str,
        loss: str,
        lr_schedule: np.ndarray,
        momentum: float,
        nesterov: bool,
        weight_decay: float,
        decoupled: bool,
        mask_at: str,
        prune_at: list[dict[str, Any]] | None,
        record: str,
    ) -> dict[str, list]:
        """T = len(lr_schedule) full-batch SGD updates of the masked network (docs/training.md).

        theta_0 = ``params``, M = ``masks`` (None: all alive). Update t, with g the
        gradient of the mean loss over all of (X, y) in the effective weights
        theta * M (the dense network's gradient there, not masked), mu = momentum,
        wd = weight_decay (torch.optim.SGD with dampening 0; SGDW for decoupled):

            d = g * M [not under "weights"]  + wd * theta [coupled only]
            v = mu * v + d          (v = d at the first update and after a rewind)
            u = d + mu * v if nesterov, v if mu > 0, d otherwise
            s = u + wd * theta [decoupled only]
            theta = theta - lr_schedule[t] * s

        ``mask_at``: "update" -- s is multiplied by M, and theta and v are set to
        0.0 at pruned entries at the start and whenever entries are pruned (the
        velocity of a weight pruned at step t is zeroed); "weights" -- g is not
        masked, theta = (theta - lr s) * M after every update and at pruning, v is
        never masked; "gradient" -- torch.nn.utils.prune's reparametrisation: only
        g is masked, theta (weight_orig) is never zeroed, v is kept at pruning.
        ``prune_at``: None or a list of {"step": t, "masks": masks of every parameter,
        nested in the current ones, "rewind": params or None}, steps increasing in
        [0, T): before update t the masks become "masks"; with a "rewind", theta =
        the rewind values and the velocity is reset; then the state is zeroed as
        ``mask_at`` says. Returns {"params": [theta_0 .. theta_T] (theta_0 after the
        initial zeroing), "velocity": [v_1 .. v_T]} (v = d when momentum is 0) for
        ``record`` "all", {"params": [theta_T], "velocity": [v_T]} for "last". Raise
        ``NotProvided`` for a ``mask_at`` the backend does not implement.
        """
        raise NotProvided

    # --------------------------------------------------------------- controls
    def random_masks(
        self,
        *,
        masks: dict[str, np.ndarray],
        names: list[str],
        seed: int,
        within: dict[str, np.ndarray] | None,
        generator: str,
    ) -> dict[str, np.ndarray]:
        """Random masks with exactly the alive count of ``masks[name]`` for each name in ``names``.

        The k alive entries are drawn uniformly among the alive entries of
        ``within[name]`` (within None: all entries), so the result is nested in
        ``within``; masks of other names are returned unchanged. ``generator``
        "reference": rng = Generator(PCG64(seed)); for each name in order, c = the
        flat C-order indices of the candidates, perm = rng.permutation(len(c)), alive
        = c[perm[:k]] (refprune.lottery.random_masks_like). "own": the backend's own
        generator seeded with ``seed`` (only counts, nesting, determinism and
        uniformity are checked). Raise ``NotProvided`` for "reference" if the
        backend cannot reproduce NumPy's stream.
        """
        raise NotProvided

    def reinit(
        self,
        *,
        params: dict[str, np.ndarray],
        masks: dict[str, np.ndarray],
        init: str,
        sigma: float | None,
        seed: int,
        generator: str,
    ) -> dict[str, np.ndarray]:
        """Fresh initial parameters of ``params``' architecture with the masks kept.

        W_l ~ N(0, std_l^2) entrywise, biases 0.0, std_l = sqrt(2 / in_l) for
        "kaiming", sqrt(2 / (in_l + out_l)) for "glorot", ``sigma`` for "normal";
        then every entry pruned by ``masks`` is 0.0. ``generator`` "reference":
        rng = Generator(PCG64(seed)), W_l = std_l * rng.standard_normal((out_l, in_l))
        for l = 0 .. L-1 in order (refprune.mlp.MLP's draw order); "own": the
        backend's own generator seeded with ``seed``.
        """
        raise NotProvided


def provides(backend: Any, op: str) -> bool:
    """True when ``backend`` has a callable ``op`` that is not ``Backend``'s placeholder."""
    if op not in OPERATIONS:
        raise ValueError(f"op must be one of {sorted(OPERATIONS)}, got {op!r}")
    method = getattr(backend, op, None)
    if method is None or not callable(method):
        return False
    return getattr(type(backend), op, None) is not getattr(Backend, op)


def load_backend(spec: str | Any) -> Any:
    """The backend named by ``"package.module:attribute"`` (a class is instantiated).

    ``attribute`` may be dotted (``module:Class.factory``). An object that is not a
    string is returned as is (a class is instantiated).
    """
    if not isinstance(spec, str):
        return spec() if inspect.isclass(spec) else spec
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"backend must look like 'package.module:object', got {spec!r}")
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"backend {spec!r}: {module_name} has no attribute {attr!r}") from None
    return obj() if inspect.isclass(obj) else obj


def backend_name(backend: Any) -> str:
    return str(getattr(backend, "name", None) or type(backend).__name__)


# --------------------------------------------------------------------------- reference
def _model(params: Params, activation: str, loss: str):
    """A refprune MLP holding ``params`` (names and shapes checked)."""
    from refprune.mlp import MLP

    n_layers = sum(1 for n in params if n.endswith(".weight"))
    expected = [f"layers.{l}.{kind}" for l in range(n_layers) for kind in ("weight", "bias")]
    if n_layers == 0 or sorted(params) != sorted(expected):
        raise ValueError(f"params must have exactly the names {expected}, got {sorted(params)}")
    weights = [np.asarray(params[f"layers.{l}.weight"]) for l in range(n_layers)]
    if any(w.ndim != 2 for w in weights):
        raise ValueError("params: every layers.{l}.weight must be 2-dimensional")
    sizes = [weights[0].shape[1]] + [w.shape[0] for w in weights]
    model = MLP(sizes, activation, loss=loss, seed=0)
    model.load_state_dict({"params": dict(params)})
    return model


def _masked_model(params: Params, masks: Mapping[str, np.ndarray], activation: str, loss: str):
    """``_model`` with ``masks`` (of every parameter) set: pruned entries become 0.0."""
    model = _model(params, activation, loss)
    names = set(model.params)
    if not isinstance(masks, Mapping) or set(masks) != names:
        raise ValueError(
            f"masks must have exactly the names {sorted(names)}, got "
            f"{sorted(masks) if isinstance(masks, Mapping) else type(masks).__name__}"
        )
    model.set_masks(masks)
    return model


def flat_names(params: Params) -> list[str]:
    """Parameter names in the flat parameter order (layer by layer, weight then bias)."""
    n_layers = sum(1 for n in params if n.endswith(".weight"))
    return [f"layers.{l}.{kind}" for l in range(n_layers) for kind in ("weight", "bias")]


def flatten(tree: Params) -> np.ndarray:
    """Concatenate a params-shaped dict into one vector in the flat parameter order."""
    return np.concatenate([np.ravel(tree[n]) for n in flat_names(tree)])


def unflatten(vector: np.ndarray, like: Params) -> dict[str, np.ndarray]:
    """Split a flat vector into a dict shaped like ``like`` (inverse of ``flatten``)."""
    out, start = {}, 0
    for n in flat_names(like):
        size = np.size(like[n])
        out[n] = np.asarray(vector[start : start + size], dtype=np.float64).reshape(
            np.shape(like[n])
        )
        start += size
    return out


class ReferenceBackend(Backend):
    """refprune itself, through its public functions; it passes every check by construction.

    Operations whose reference module is not available raise ``NotProvided``.
    """

    name = "refprune reference"

    def __init__(self) -> None:
        # Import refprune now: a worker process (python -m conformance serve) then does it
        # before its hello, while the runner reads the golden files, not in its first call.
        import refprune  # noqa: F401

    # ------------------------------------------------------------------ masks
    def fraction_to_count(self, *, fraction, n, rounding):
        from refprune.masks import fraction_to_count

        return fraction_to_count(fraction, n, rounding)

    def keep_top_k(self, *, scores, k):
        from refprune.masks import keep_top_k

        return keep_top_k(scores, k)

    def select_masks(self, *, scores, masks, fraction, scope, rate_multipliers, rounding):
        from refprune.masks import select_masks

        return select_masks(
            scores,
            masks,
            fraction,
            scope=scope,
            rate_multipliers=rate_multipliers,
            rounding=rounding,
        )

    def prune_units(self, *, params, masks, fraction, norm, rounding):
        from refprune.masks import prune_units

        model = _model(params, "relu", "mse")
        model.set_masks(masks)
        prune_units(model, fraction, norm=norm, rounding=rounding, allow_collapse=True)
        return {n: m.copy() for n, m in model.masks.items()}

    def n_m_mask(self, *, scores, n, m, alive):
        from refprune.masks import n_m_mask

        return n_m_mask(scores, n, m, alive=alive)

    # --------------------------------------------------------------- profiles
    def profile_mask(self, *, scores, amount, alive, scope, ignore):
        from .conventions import get_profile

        return get_profile("reference").keep_masks(
            scores, amount, alive=alive, scope=scope, ignore=ignore
        )

    # -------------------------------------------------------------- curvature
    def loss_value(self, *, params, X, y, activation, loss):
        return _model(params, activation, loss).loss_value(X, y)

    def gradient(self, *, params, X, y, activation, loss):
        from refprune.curvature import gradient

        return gradient(_model(params, activation, loss), X, y)

    def hvp(self, *, params, X, y, v, activation, loss):
        from refprune.curvature import hvp

        return hvp(_model(params, activation, loss), X, y, v)

    def full_hessian(self, *, params, X, y, activation, loss):
        from refprune.curvature import full_hessian

        return full_hessian(_model(params, activation, loss), X, y)

    def hessian_diag(self, *, params, X, y, activation, loss, method):
        from refprune.curvature import hessian_diag

        if method == "hutchinson":
            raise ValueError(
                "method must be 'exact', 'ggn' or 'obd'; Hutchinson's estimate is "
                "hutchinson_diag (the probes are given)"
            )
        return hessian_diag(_model(params, activation, loss), X, y, method)

    def hutchinson_diag(self, *, params, X, y, activation, loss, probes):
        from refprune.curvature import hvp

        model = _model(params, activation, loss)
        probes = np.asarray(probes, dtype=np.float64)
        if probes.ndim != 2 or probes.shape[1] != flatten(params).size or probes.shape[0] < 1:
            raise ValueError(
                f"probes must have shape (S >= 1, {flatten(params).size}), got {probes.shape}"
            )
        acc = np.zeros(probes.shape[1])
        for v in probes:  # summed in probe order, then / S
            acc += v * flatten(hvp(model, X, y, unflatten(v, params)))
        return unflatten(acc / probes.shape[0], params)

    # ----------------------------------------------------------------- scores
    def scores(self, *, rule, params, X, y, activation, loss, masks, options):
        from refprune.scores import compute_scores

        model = _model(params, activation, loss)
        if masks is not None:
            model.set_masks(masks)
        options = dict(options or {})
        extra = {"damping": options["damping"]} if rule == "obs" and "damping" in options else {}
        return compute_scores(
            rule,
            model,
            X,
            y,
            names=options.get("names"),
            seed=options.get("seed"),
            hessian_method=options.get("hessian_method", "exact"),
            **extra,
        )

    def obs_prune(self, *, params, X, y, activation, loss, masks, n_remove, damping):
        from refprune.rescoring import obs_prune

        model = _model(params, activation, loss)
        if masks is not None:
            model.set_masks(masks)
        result = obs_prune(model, X, y, n_remove, damping)
        return {"params": result.params, "masks": result.masks}

    def synflow_prune(self, *, params, masks, density, iterations, rounding):
        from refprune.rescoring import synflow_prune

        model = _model(params, "relu", "mse")
        if masks is not None:
            model.set_masks(masks)
        return synflow_prune(
            model, density, iterations=iterations, rounding=rounding, allow_collapse=True
        ).masks

    # -------------------------------------------------------------- schedules
    def schedule(self, *, name, options, n, rounding):
        from refprune import schedules

        makers: dict[str, Callable[..., Any]] = {
            "geometric": schedules.geometric,
            "one_shot": schedules.one_shot,
            "cubic": schedules.cubic,
            "linear": schedules.linear,
            "constant": schedules.constant,
        }
        if name not in makers:
            raise ValueError(f"name must be one of {sorted(makers)}, got {name!r}")
        options = dict(options)
        positional = {
            "geometric": ("alpha", "rounds"),
            "one_shot": ("sparsity",),
            "cubic": ("initial_sparsity", "final_sparsity"),
            "linear": ("initial_sparsity", "final_sparsity"),
            "constant": ("sparsity",),
        }[name]
        args = [options.pop(k) for k in positional]
        sched = makers[name](*args, **options)
        return {
            "kind": sched.kind,
            "steps": np.array(sched.steps, dtype=np.int64),
            "values": np.array(sched.values, dtype=np.float64),
            "densities": np.array(sched.densities(), dtype=np.float64),
            "alive_counts": np.array(sched.alive_counts(n, rounding), dtype=np.int64),
        }

    def rounds_to_density(self, *, target_density, alpha, n, rounding):
        from refprune.schedules import rounds_to_density

        return rounds_to_density(target_density, alpha, n=n, rounding=rounding)

    # ---------------------------------------------------------- sparse approx
    def hard_threshold(self, *, w, k):
        from refprune.sparse_approx import hard_threshold

        return hard_threshold(w, k).u

    def soft_threshold(self, *, w, lam):
        from refprune.sparse_approx import soft_threshold

        return soft_threshold(w, lam)

    def hard_threshold_prox(self, *, w, lam):
        from refprune.sparse_approx import hard_threshold_prox

        return hard_threshold_prox(w, lam)

    def sparse_approx_exact(self, *, problem, w, k, d, H):
        from refprune import sparse_approx as sa

        if problem == "nonnegative":
            return sa.best_k_sparse_nonnegative(w, k).u
        if problem == "weighted":
            return sa.best_k_sparse_weighted(w, d, k).u
        if problem == "quadratic":
            return sa.best_k_sparse_quadratic(w, H, k).u
        raise ValueError(
            f"problem must be 'nonnegative', 'weighted' or 'quadratic', got {problem!r}"
        )

    def ista(self, *, A, y, lam, step, n_iter):
        from refprune.sparse_approx import ista

        return ista(A, y, lam, step=step, n_iter=n_iter).x

    def iht(self, *, A, y, k, step, n_iter):
        from refprune.sparse_approx import iht

        return iht(A, y, k, step=step, n_iter=n_iter).x

    # ---------------------------------------------------------------- lottery
    def imp_round(
        self, *, trained, rewind_params, masks, fraction, scope, rate_multipliers, rounding
    ):
        from refprune.lottery import imp_round

        model = _model(trained, "relu", "mse")
        model.set_masks(masks)
        net = imp_round(
            model,
            rewind_params,
            fraction,
            rule="magnitude",
            scope=scope,
            rate_multipliers=rate_multipliers,
            rounding=rounding,
            allow_collapse=True,
        )
        return {
            "masks": {n: m.copy() for n, m in net.masks.items()},
            "params": {n: p.copy() for n, p in net.params.items()},
        }

    def imp(self, *, params, X, y, activation, loss, options):
        from refprune.lottery import StepDecayLR, TrainConfig, decode_array, run_imp
        from refprune.schedules import Schedule

        o = dict(options)
        model = _model(params, activation, loss)
        sched = None
        if o.get("milestones"):
            sched = StepDecayLR(o["lr"], tuple(o["milestones"]), o.get("gamma", 0.1))
        cfg = TrainConfig(
            epochs=o["epochs"],
            lr=o["lr"],
            batch_size=None,
            momentum=o.get("momentum", 0.0),
            lr_schedule=sched,
        )
        schedule = None
        if o.get("sparsities") is not None:
            values = tuple(float(v) for v in o["sparsities"])
            schedule = Schedule("absolute", "absolute", tuple(range(1, len(values) + 1)), values)
        res = run_imp(
            model,
            X,
            y,
            rounds=o.get("rounds", 0),
            alpha=o.get("alpha", 0.0),
            schedule=schedule,
            scope=o.get("scope", "layer"),
            rate_multipliers=o.get("rate_multipliers"),
            rewind=o.get("rewind", "init"),
            train_config=cfg,
            allow_collapse=True,
        )
        rounds = res.trace["rounds"]
        return {
            "masks": [{n: m.copy() for n, m in ms.items()} for ms in res.masks],
            "rewound": [
                {n: decode_array(e) for n, e in r["rewound_weights"].items()} for r in rounds
            ],
            "final": {n: p.copy() for n, p in res.model.params.items()},
            "train_loss": np.array([r["train_loss"] for r in rounds], dtype=np.float64),
        }

    # ------------------------------------------------------- sparse execution
    # refprune.sparse with every layer forced sparse on one thread: SciPy's CSR products,
    # the same bits on every machine (no BLAS, no measured plan).
    def sparse_forward(self, *, params, masks, X, activation):
        from refprune.sparse import SparseMLP

        model = _masked_model(params, masks, activation, "mse")
        return SparseMLP(model, execution="sparse", threads=1).forward(X)

    def sparse_train_step(self, *, params, masks, X, y, activation, loss, lr, weight_decay):
        from refprune.sparse import SparseSGD

        model = _masked_model(params, masks, activation, loss)
        sgd = SparseSGD(model, lr=lr, weight_decay=weight_decay, execution="sparse", threads=1)
        value = sgd.step(X, y)
        return {"params": {n: p.copy() for n, p in sgd.to_model().params.items()}, "loss": value}

    # --------------------------------------------------------------- training
    def train_steps(
        self,
        *,
        params,
        masks,
        X,
        y,
        activation,
        loss,
        lr_schedule,
        momentum,
        nesterov,
        weight_decay,
        decoupled,
        mask_at,
        prune_at,
        record,
    ):
        from refprune.train import train_steps

        return train_steps(
            params,
            masks,
            X,
            y,
            activation=activation,
            loss=loss,
            lr_schedule=lr_schedule,
            momentum=momentum,
            nesterov=nesterov,
            weight_decay=weight_decay,
            decoupled=decoupled,
            mask_at=mask_at,
            prune_at=prune_at,
            record=record,
        )

    # --------------------------------------------------------------- controls
    def random_masks(self, *, masks, names, seed, within, generator):
        from refprune.lottery import random_masks_like

        _generator(generator)
        unknown = [n for n in names if n not in masks]
        if unknown:
            raise ValueError(f"names must be keys of masks, got {unknown}")
        return random_masks_like(masks, list(names), seed, within=within)

    def reinit(self, *, params, masks, init, sigma, seed, generator):
        from refprune.lottery import reinit_like

        _generator(generator)
        model = _model(params, "relu", "mse")
        fresh = _model(reinit_like(_architecture(model, init, sigma), seed), "relu", "mse")
        fresh.set_masks(masks)
        return {n: p.copy() for n, p in fresh.params.items()}


GENERATORS = ("reference", "own")


def _generator(generator: str) -> None:
    if generator not in GENERATORS:
        raise ValueError(f"generator must be one of {list(GENERATORS)}, got {generator!r}")


def _architecture(model, init: str, sigma: float | None):
    """An MLP of ``model``'s sizes with the initialisation ``init`` (weights not used)."""
    from refprune.mlp import MLP

    return MLP(model.sizes, model.activation, loss=model.loss, init=init, sigma=sigma, seed=0)
