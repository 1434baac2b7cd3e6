"""Wrong backends of the scores family: saliency rules."""

from __future__ import annotations

import numpy as np

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
        result = super().scores(rule=rule, params=params, X=X, y=y, activation=activation, loss=loss,
                                masks=masks, options=options)    # argument checks, other rules
        if rule != "obd":
            return result
        m = {n: (np.ones(np.shape(v), dtype=bool) if masks is None else np.asarray(masks[n], dtype=bool))
             for n, v in params.items()}
        w = {n: np.where(m[n], params[n], 0.0) for n in params}
        h = self.hessian_diag(params=w, X=X, y=y, activation=activation, loss=loss,
                              method=(options or {}).get("hessian_method", "exact"))
        return {n: np.where(m[n], 0.5 * h[n] * np.abs(w[n]), 0.0) for n in result}
