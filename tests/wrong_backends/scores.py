"""Wrong backends of the scores family: saliency rules."""

from __future__ import annotations

import numpy as np

from conformance.backend import _model
from refprune import curvature

from .base import WrongBackend


class OBDWithAbsoluteWeight(WrongBackend):
    """OBD saliency with |w| where the formula has w**2: s = 1/2 h |w|.

    The ranking changes wherever the curvatures differ: a weight with a large
    h and a small |w| moves up. Models the square dropped when porting
    LeCun et al.'s s_i = h_ii u_i**2 / 2 next to magnitude code that already
    works with |w|.
    """

    name = "OBD with |w|"
    family = "scores"

    def scores(self, *, rule, params, X, y, activation, loss, masks, options):
        result = super().scores(
            rule=rule,
            params=params,
            X=X,
            y=y,
            activation=activation,
            loss=loss,
            masks=masks,
            options=options,
        )  # argument checks, other rules
        if rule != "obd":
            return result
        m = {
            n: (
                np.ones(np.shape(v), dtype=bool)
                if masks is None
                else np.asarray(masks[n], dtype=bool)
            )
            for n, v in params.items()
        }
        w = {n: np.where(m[n], params[n], 0.0) for n in params}
        h = self.hessian_diag(
            params=w,
            X=X,
            y=y,
            activation=activation,
            loss=loss,
            method=(options or {}).get("hessian_method", "exact"),
        )
        return {n: np.where(m[n], 0.5 * h[n] * np.abs(w[n]), 0.0) for n in result}


def rule_scores(
    rule: str,
    model,
    X,
    y,
    options: dict,
    names: list[str],
    *,
    obd_half: float = 0.5,
    taylor1_abs: bool = True,
    taylor2_first_sign: float = -1.0,
    grasp_sign: float = 1.0,
    synflow_abs: bool = True,
) -> dict[str, np.ndarray]:
    """The raw scores (before pruned entries are zeroed) of the data rules and SynFlow, rebuilt
    from refprune's derivatives, with five switches: the factor of OBD (1/2), taylor1 as |g w|
    or -g w, the sign of taylor2's first-order term (-g w), GraSP's sign (w (H g)), and SynFlow's
    path sums through |W| or W."""
    w = model.effective_params()
    if rule == "synflow":
        order = [n for n in model.params if n.endswith(".weight")]
        Ws = [np.abs(w[n]) if synflow_abs else w[n] for n in order]
        a = [np.ones(Ws[0].shape[1])]
        for W in Ws:
            a.append(W @ a[-1])
        r = [np.ones(Ws[-1].shape[0])]
        for W in reversed(Ws):
            r.append(W.T @ r[-1])
        r.reverse()
        s = {n: np.abs(np.outer(r[l + 1], a[l]) * Ws[l]) for l, n in enumerate(order)}
        return {n: s[n] for n in names}
    g = curvature.gradient(model, X, y)
    if rule == "grasp":
        v = {n: (g[n] if n in names else np.zeros_like(g[n])) for n in model.params}
        hg = curvature.hvp(model, X, y, v)
        return {n: grasp_sign * (w[n] * hg[n]) for n in names}
    if rule == "taylor1":
        return {n: np.abs(g[n] * w[n]) if taylor1_abs else -g[n] * w[n] for n in names}
    h = curvature.hessian_diag(model, X, y, options.get("hessian_method", "exact"))
    if rule == "obd":
        return {n: obd_half * h[n] * (w[n] * w[n]) for n in names}
    t2 = {n: taylor2_first_sign * g[n] * w[n] + 0.5 * h[n] * (w[n] * w[n]) for n in names}
    return {n: np.abs(v) for n, v in t2.items()} if rule == "taylor2_abs" else t2


class _RulesBackend(WrongBackend):
    """``scores`` of the rules in ``rules`` through ``rule_scores`` with the switches set by
    ``switches``; pruned entries then score 0.0 as documented."""

    rules: tuple[str, ...] = ()
    switches: dict = {}

    def scores(self, *, rule, params, X, y, activation, loss, masks, options):
        result = super().scores(
            rule=rule,
            params=params,
            X=X,
            y=y,
            activation=activation,
            loss=loss,
            masks=masks,
            options=options,
        )  # argument checks, other rules
        if rule not in self.rules:
            return result
        model = _model(params, activation, loss)
        if masks is not None:
            model.set_masks(masks)
        raw = rule_scores(rule, model, X, y, dict(options or {}), list(result), **self.switches)
        return {n: np.where(model.masks[n], raw[n], 0.0) for n in result}


class OBDWithoutHalf(_RulesBackend):
    """OBD saliency without its factor 1/2: s = h w**2.

    Every score is twice the documented one: the ranking is unchanged, but the
    values (which a saliency-weighted method, or a comparison with taylor2's
    second-order term, reads) are not. Models dropping the 1/2 of the Taylor
    expansion dL = 1/2 h dw**2 when the constant "does not change the ranking".
    """

    name = "OBD without 1/2"
    family = "scores"
    rules = ("obd",)
    switches = {"obd_half": 1.0}


class SignedTaylor1(_RulesBackend):
    """taylor1 as the signed first-order change -g w instead of its magnitude |g w|.

    Weights whose removal would lower the loss score negative and go first,
    where SNIP and Molchanov et al. rank by |g w|. Models the missing ``abs``
    in ``(weight * weight.grad)`` scores, as in a first-order Taylor score
    written from the loss-change formula.
    """

    name = "signed taylor1"
    family = "scores"
    rules = ("taylor1",)
    switches = {"taylor1_abs": False}


class Taylor2FirstOrderSignFlipped(_RulesBackend):
    """taylor2 with the first-order term's sign flipped: g w + 1/2 h w**2.

    Removing w_i moves it by dw_i = -w_i, so the change is -g_i w_i + 1/2 h_ii
    w_i**2; using dw_i = +w_i flips the first term. Models the sign slip
    between "the perturbation" and "the weight" in the OBD/OBS expansion.
    """

    name = "taylor2 first-order sign flipped"
    family = "scores"
    rules = ("taylor2", "taylor2_abs")
    switches = {"taylor2_first_sign": 1.0}


class GraspPaperSign(_RulesBackend):
    """GraSP returned with the paper's sign, S = -w (H g), where the protocol's keep-score is
    s = w (H g) (higher kept).

    Every GraSP score has the wrong sign, so selection keeps exactly the weights
    it should prune. Models copying the paper's score (highest removed) into a
    library whose convention is "higher score = kept".
    """

    name = "GraSP with the paper's sign"
    family = "scores"
    rules = ("grasp",)
    switches = {"grasp_sign": -1.0}


class MagnitudeOfUnmaskedWeights(WrongBackend):
    """Magnitude scores read from the stored weights, not the masked ones.

    A pruned weight scores its old |theta| instead of 0.0; where it was large it
    outranks alive weights (selection that ranks every entry then revives it).
    Models ``weight_orig.abs()`` under ``torch.nn.utils.prune``, which keeps
    the unpruned values in ``weight_orig`` and the product in ``weight``.
    """

    name = "magnitude of unmasked weights"
    family = "scores"

    def scores(self, *, rule, params, X, y, activation, loss, masks, options):
        result = super().scores(
            rule=rule,
            params=params,
            X=X,
            y=y,
            activation=activation,
            loss=loss,
            masks=masks,
            options=options,
        )
        if rule != "magnitude":
            return result
        return {n: np.abs(np.asarray(params[n], dtype=np.float64)) for n in result}


class SynflowWithoutAbs(_RulesBackend):
    """SynFlow path sums taken through the signed weights instead of |W|.

    R = 1^T W_{L-1} ... W_0 1 lets positive and negative paths cancel, so a
    weight on a path that cancels scores low. Models skipping the
    "linearise" step of SynFlow's code (replace every parameter by its
    absolute value before the forward pass).
    """

    name = "SynFlow without |W|"
    family = "scores"
    rules = ("synflow",)
    switches = {"synflow_abs": False}


class HessianMethodIgnored(WrongBackend):
    """The curvature rules always use the exact Hessian diagonal, whatever ``hessian_method``
    asks for.

    OBD and taylor2 with "ggn" or "obd" silently return the exact-diagonal
    scores; equal for relu and identity networks, different for tanh and
    sigmoid. Models an option accepted by the public function but not
    passed down to the curvature call.
    """

    name = "hessian method ignored"
    family = "scores"

    def scores(self, *, rule, params, X, y, activation, loss, masks, options):
        super().scores(
            rule=rule,
            params=params,
            X=X,
            y=y,
            activation=activation,
            loss=loss,
            masks=masks,
            options=options,
        )  # argument checks
        options = dict(options or {})
        if rule in ("obd", "taylor2", "taylor2_abs"):
            options["hessian_method"] = "exact"
        return super().scores(
            rule=rule,
            params=params,
            X=X,
            y=y,
            activation=activation,
            loss=loss,
            masks=masks,
            options=options,
        )
