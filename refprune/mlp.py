"""A multilayer perceptron with named parameters and a boolean mask per parameter.

Layer l (l = 0 .. L-1) maps a_{l} to z_{l+1} = a_l W_l^T + b_l, with W_l of shape
(out_l, in_l) (PyTorch's ``nn.Linear`` layout) and b_l of shape (out_l,).
Hidden layers apply the activation, the last layer is linear (logits for
cross-entropy, predictions for mean-squared error).

Parameter names are ``layers.{l}.weight`` and ``layers.{l}.bias``, in that
order, layer by layer; every dict this project returns uses this order.

Masks: every parameter has a boolean mask of its shape (True = alive). The
forward pass uses W * M, training masks every update, and setting a mask zeroes
the pruned entries, so a pruned weight is exactly 0.0 from then on. "Alive"
means the mask is True, never that the value is non-zero.

Initialisation draw order (reproducible by any backend): with
rng = Generator(PCG64(seed)), for l = 0 .. L-1 in order, W_l =
std_l * rng.standard_normal((out_l, in_l)) in C order; biases are zero and
draw nothing. std_l is sqrt(2 / in_l) for "kaiming" (He et al. 2015, normal,
fan-in, ReLU gain), sqrt(2 / (in_l + out_l)) for "glorot" (Glorot and Bengio
2010, normal), and ``sigma`` for "normal".
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, cast, overload

import numpy as np

from . import autograd as ag
from ._checks import bool_array, choice, float_array, int_labels, positive_int, real_number
from .activations import get_activation
from .rng import make_rng

INITS = ("kaiming", "glorot", "normal")
LOSSES = ("cross_entropy", "mse")


def init_std(init: str, fan_in: int, fan_out: int, sigma: float | None = None) -> float:
    """Standard deviation of a layer's normal initialisation (see module docstring)."""
    if init == "kaiming":
        return float(np.sqrt(2.0 / fan_in))
    if init == "glorot":
        return float(np.sqrt(2.0 / (fan_in + fan_out)))
    return float(cast(float, sigma))


class MLP:
    """Fully connected network; see the module docstring for every convention.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, input first, output last (at least two entries, each >= 1).
    activation : {"relu", "tanh", "sigmoid", "identity"}
        Hidden-layer activation.
    loss : {"cross_entropy", "mse"}
        Training loss, a mean over the batch.
    init : {"kaiming", "glorot", "normal"}
        Weight initialisation.
    sigma : float > 0, finite
        The standard deviation of "normal"; required by it, refused by the others.
    seed : int or numpy.random.Generator
        Source of the initial weights.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "relu",
        *,
        loss: str = "cross_entropy",
        init: str = "kaiming",
        sigma: float | None = None,
        seed: int | np.random.Generator = 0,
    ):
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Iterable):
            raise TypeError(
                f"sizes must be a sequence of positive integers, got {type(sizes).__name__}"
            )
        sizes = tuple(positive_int(s, "sizes[i]") for s in sizes)
        if len(sizes) < 2:
            raise ValueError(f"sizes must have at least 2 entries (input and output), got {sizes}")
        get_activation(activation)
        choice(loss, "loss", LOSSES)
        choice(init, "init", INITS)
        if init == "normal":
            if sigma is None:
                raise ValueError("sigma must be given when init='normal'")
            sigma = real_number(sigma, "sigma", low=0.0, low_open=True)
        elif sigma is not None:
            raise ValueError(
                f"sigma is used only by init='normal', got sigma={sigma!r} with init={init!r}"
            )
        self.sizes = sizes
        self.activation = activation
        self.loss = loss
        self.init = init
        self.sigma = sigma
        rng = make_rng(seed)
        self.params: dict[str, np.ndarray] = {}
        for l, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            std = init_std(init, fan_in, fan_out, sigma)
            self.params[f"layers.{l}.weight"] = std * rng.standard_normal((fan_out, fan_in))
            self.params[f"layers.{l}.bias"] = np.zeros(fan_out)
        self.masks: dict[str, np.ndarray] = {}
        for name, p in self.params.items():
            self._store_mask(name, np.ones(p.shape, dtype=bool))

    # ------------------------------------------------------------ structure
    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    @property
    def n_outputs(self) -> int:
        return self.sizes[-1]

    def weight_names(self) -> list[str]:
        return [f"layers.{l}.weight" for l in range(self.n_layers)]

    def bias_names(self) -> list[str]:
        return [f"layers.{l}.bias" for l in range(self.n_layers)]

    def check_names(self, names: Iterable[str] | None) -> list[str]:
        """Validate a choice of parameter names (None: the weight matrices), in the given order."""
        if names is None:
            return self.weight_names()
        if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
            raise TypeError(
                f"names must be a sequence of parameter names, got {type(names).__name__}"
                + (f" {names!r}" if isinstance(names, (str, bytes)) else "")
            )
        names = list(names)
        if not names:
            raise ValueError("names must name at least one parameter, got an empty sequence")
        for n in names:
            if n not in self.params:
                raise ValueError(
                    f"names must be parameters of the model, one of {list(self.params)}; got {n!r}"
                )
        if len(set(names)) != len(names):
            raise ValueError(f"names must not repeat a parameter, got {names}")
        return names

    def weights(self) -> list[np.ndarray]:
        return [self.params[n] for n in self.weight_names()]

    def biases(self) -> list[np.ndarray]:
        return [self.params[n] for n in self.bias_names()]

    def effective_params(self) -> dict[str, np.ndarray]:
        """The parameters as the forward pass uses them: value * mask."""
        return {n: (p * self.masks[n] if self._pruned[n] else p) for n, p in self.params.items()}

    # ------------------------------------------------------------ masks
    def _store_mask(self, name: str, mask: np.ndarray) -> None:
        """Store a checked mask the model owns (made read-only); the parameter is not touched."""
        mask.flags.writeable = False
        self.masks[name] = mask
        if not hasattr(self, "_pruned"):
            self._pruned: dict[str, bool] = {}
        self._pruned[name] = not bool(mask.all())

    def check_writeable(self, names: Iterable[str]) -> None:
        """Raise ``ValueError`` if a parameter of ``names`` cannot be updated in place.

        The model updates its parameter arrays in place (setting a mask zeroes
        the pruned entries, an optimizer step subtracts the update); an array
        made read-only by the caller is refused before anything changes.
        """
        for name in names:
            if not self.params[name].flags.writeable:
                raise ValueError(
                    f"params[{name!r}] is read-only, and the model updates it in "
                    "place; make it writeable (or load a writeable copy with "
                    "load_state_dict) first"
                )

    def set_mask(self, name: str, mask: Any) -> None:
        """Replace the mask of parameter ``name`` and zero its pruned entries.

        The mask is copied and stored read-only; change it only through this method
        (or ``set_masks``). On any error nothing changes.
        """
        self.set_masks({name: mask})

    def checked_masks(self, masks: Any) -> dict[str, np.ndarray]:
        """``masks`` as bool arrays, after checking it maps parameter names of this model to
        masks of their shapes (``TypeError``/``ValueError`` otherwise); nothing is stored."""
        if not isinstance(masks, Mapping):
            raise TypeError(
                f"masks must be a mapping name -> bool array, got {type(masks).__name__}"
            )
        checked = {}
        for name, mask in masks.items():
            if name not in self.params:
                raise ValueError(
                    f"masks has unknown parameter {name!r}; expected names from {list(self.params)}"
                )
            checked[name] = bool_array(mask, f"masks[{name!r}]", shape=self.params[name].shape)
        return checked

    def set_masks(self, masks: Mapping[str, Any]) -> None:
        """Set several masks at once and zero the pruned entries of their parameters.

        Two phases: every mask is checked (name, dtype, shape) and every
        parameter to be zeroed is checked to be writeable, then all are stored.
        On any error the model is unchanged.
        """
        checked = self.checked_masks(masks)
        self.check_writeable(checked)
        pruned = {name: ~mask for name, mask in checked.items()}
        for name, mask in checked.items():  # commit: nothing here can fail
            self._store_mask(name, mask)
            np.copyto(self.params[name], 0.0, where=pruned[name])

    def density(self, names: Iterable[str] | None = None) -> float:
        """Fraction of alive entries over ``names`` (default: the weight matrices)."""
        names = self.weight_names() if names is None else list(names)
        alive = sum(int(self.masks[n].sum()) for n in names)
        total = sum(self.masks[n].size for n in names)
        return alive / total

    # ------------------------------------------------------------ state
    def state_dict(self) -> dict[str, dict[str, np.ndarray]]:
        """Deep copy of the parameters and masks (for saving and rewinding)."""
        return {
            "params": {n: p.copy() for n, p in self.params.items()},
            "masks": {n: m.copy() for n, m in self.masks.items()},
        }

    def load_state_dict(self, state: Mapping[str, Mapping[str, np.ndarray]]) -> None:
        """Restore parameters (and masks, when present) from deep copies of ``state``.

        The parameters become new arrays holding the values of ``state["params"]``
        with the pruned entries (under the new masks, or the current ones) set to
        0.0. Everything is checked and built first; on any error the model is
        unchanged.
        """
        if not isinstance(state, Mapping) or "params" not in state:
            raise ValueError("state must be a mapping with a 'params' entry")
        if not isinstance(state["params"], Mapping):
            raise TypeError(
                f"state['params'] must be a mapping name -> array, got "
                f"{type(state['params']).__name__}"
            )
        params = {}
        for n, p in self.params.items():
            if n not in state["params"]:
                raise ValueError(f"state['params'] is missing {n!r}")
            params[n] = float_array(state["params"][n], f"state['params'][{n!r}]", dtype=p.dtype)
            if params[n].shape != p.shape:
                raise ValueError(
                    f"state['params'][{n!r}] must have shape {p.shape}, got {params[n].shape}"
                )
        masks = state.get("masks")
        checked: dict[str, np.ndarray] = {}
        if masks is not None:
            if not isinstance(masks, Mapping):
                raise TypeError(
                    f"state['masks'] must be a mapping name -> bool array, got "
                    f"{type(masks).__name__}"
                )
            for n, m in masks.items():
                if n not in self.params:
                    raise ValueError(
                        f"state['masks'] has unknown parameter {n!r}; expected "
                        f"names from {list(self.params)}"
                    )
                checked[n] = bool_array(m, f"state['masks'][{n!r}]", shape=self.params[n].shape)
        for n, p in params.items():
            p[~checked.get(n, self.masks[n])] = 0.0
        for n, m in checked.items():  # commit: nothing here can fail
            self._store_mask(n, m)
        self.params.update(params)

    def copy(self) -> MLP:
        return copy.deepcopy(self)

    # ------------------------------------------------------------ computation
    @overload
    def check_inputs(
        self, X: Any, y: Any, *, require_y: Literal[True], copy: bool = True
    ) -> tuple[np.ndarray, np.ndarray]: ...
    @overload
    def check_inputs(
        self, X: Any, y: Any = None, *, require_y: bool = False, copy: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]: ...

    def check_inputs(
        self, X: Any, y: Any = None, *, require_y: bool = False, copy: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Validate a batch for this model; returns new arrays unless ``copy=False`` (inputs are
        never modified).

        ``y`` may be None (inputs only) unless ``require_y``: everything that
        computes a loss needs the labels or targets. ``copy=False`` returns X
        itself where it is already float64 (y is always new), for callers that
        only read it.
        """
        X = float_array(X, "X", ndim=2, copy=copy)
        if X.shape[1] != self.sizes[0]:
            raise ValueError(
                f"X must have {self.sizes[0]} columns (the input width), got shape {X.shape}"
            )
        if y is None:
            if require_y:
                kind = "integer class labels" if self.loss == "cross_entropy" else "float targets"
                raise TypeError(f"y must be given ({kind}, one per row of X), got None")
            return X, None
        if self.loss == "cross_entropy":
            y = int_labels(y, "y", n_classes=self.n_outputs)
            if y.shape[0] != X.shape[0]:
                raise ValueError(
                    f"y must have one label per row of X ({X.shape[0]}), got {y.shape[0]}"
                )
        else:
            y = float_array(y, "y")
            if y.ndim == 1 and self.n_outputs == 1:
                y = y[:, None]
            if y.shape != (X.shape[0], self.n_outputs):
                raise ValueError(
                    f"y must have shape {(X.shape[0], self.n_outputs)} for mse, got {y.shape}"
                )
        return X, y

    def forward(self, X: np.ndarray) -> np.ndarray:
        """Network output for a batch X of shape (N, in); no graph is built."""
        X, _ = self.check_inputs(X)
        return self._forward(X)

    def _forward(self, X: np.ndarray) -> np.ndarray:
        act = get_activation(self.activation).value
        p = self.effective_params()
        a = X
        for l in range(self.n_layers):
            z = a @ p[f"layers.{l}.weight"].T + p[f"layers.{l}.bias"]
            a = act(z) if l < self.n_layers - 1 else z
        return a

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class predictions argmax_k f(x)_k (first maximum on ties)."""
        return cast(np.ndarray, np.argmax(self.forward(X), axis=1))

    def accuracy(self, X: np.ndarray, y: np.ndarray) -> float:
        X, y = self.check_inputs(X, y, require_y=True)
        return float(np.mean(np.argmax(self._forward(X), axis=1) == y))

    def loss_value(self, X: np.ndarray, y: np.ndarray) -> float:
        X, y = self.check_inputs(X, y, require_y=True)
        return float(self._graph(X, y)[0].data)

    def _graph(
        self, X: np.ndarray, y: np.ndarray, masked: bool = True
    ) -> tuple[ag.Tensor, dict[str, ag.Tensor]]:
        """Build the loss graph: returns the loss node and the parameter leaves.

        ``masked=False`` leaves the masks out of the graph: the forward pass uses the
        stored values (pruned entries are 0.0 there too) and the gradient of a pruned
        entry is the dense network's, as when a library multiplies the weights by the
        mask after each update instead of inside the forward pass.
        """
        act = getattr(ag, self.activation)
        leaves = {n: ag.Tensor(p, requires_grad=True) for n, p in self.params.items()}
        a = ag.Tensor(X)
        for l in range(self.n_layers):
            w, b = leaves[f"layers.{l}.weight"], leaves[f"layers.{l}.bias"]
            if masked and self._pruned[w_name := f"layers.{l}.weight"]:
                w = w * ag.Tensor(self.masks[w_name].astype(np.float64))
            if masked and self._pruned[b_name := f"layers.{l}.bias"]:
                b = b * ag.Tensor(self.masks[b_name].astype(np.float64))
            z = a @ w.T + b
            a = act(z) if l < self.n_layers - 1 else z
        loss = ag.cross_entropy(a, y) if self.loss == "cross_entropy" else ag.mse(a, y)
        return loss, leaves

    def loss_and_grads(self, X: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        """Mean loss over the batch and its gradient for every parameter (by autograd).

        The gradient of a pruned entry is exactly 0 (the forward pass uses W * M).
        """
        X, y = self.check_inputs(X, y, require_y=True)
        return self._loss_and_grads(X, y)

    def _loss_and_grads(
        self, X: np.ndarray, y: np.ndarray, masked: bool = True
    ) -> tuple[float, dict[str, np.ndarray]]:
        loss, leaves = self._graph(X, y, masked)
        loss.backward()
        return float(loss.data), {n: _filled_grad(leaves[n]) for n in self.params}

    def __repr__(self) -> str:
        return (
            f"MLP(sizes={self.sizes}, activation={self.activation!r}, loss={self.loss!r}, "
            f"density={self.density():.4f})"
        )


def _filled_grad(leaf: ag.Tensor) -> np.ndarray:
    """The gradient ``backward`` left in a parameter leaf (every parameter reaches the loss)."""
    assert leaf.grad is not None
    return leaf.grad


# ---------------------------------------------------------------- checks and flat vectors
def check_model(model: Any, name: str = "model") -> MLP:
    """``model`` if it is a refprune MLP, else TypeError naming ``name``."""
    if not isinstance(model, MLP):
        raise TypeError(f"{name} must be a refprune.mlp.MLP, got {type(model).__name__}")
    return model


def check_param_dict(
    d: Any, model: MLP, name: str, *, allow_bool: bool = False
) -> dict[str, np.ndarray]:
    """Copy of ``d`` checked to hold exactly the model's parameter names and shapes."""
    if not isinstance(d, Mapping):
        raise TypeError(
            f"{name} must be a mapping from parameter name to array, got {type(d).__name__}"
        )
    missing = [n for n in model.params if n not in d]
    extra = [n for n in d if n not in model.params]
    if missing or extra:
        raise ValueError(
            f"{name} must have exactly the model's parameter names "
            f"{list(model.params)}; missing {missing}, unexpected {extra}"
        )
    out = {}
    for n, p in model.params.items():
        arr = np.asarray(d[n])
        if allow_bool and arr.dtype == np.bool_:
            arr = arr.copy()
        else:
            arr = float_array(d[n], f"{name}[{n!r}]", allow_empty=True)
        if arr.shape != p.shape:
            raise ValueError(f"{name}[{n!r}] must have shape {p.shape}, got {arr.shape}")
        out[n] = arr
    return out


def n_params(model: MLP) -> int:
    """Number P of scalar parameters (weights and biases, pruned ones included)."""
    return int(sum(p.size for p in check_model(model).params.values()))


def flatten_params(d: Mapping[str, np.ndarray], model: MLP) -> np.ndarray:
    """Concatenate a per-parameter dict into one vector of length P.

    The order is that of ``model.params`` (``layers.0.weight``, ``layers.0.bias``,
    ``layers.1.weight``, ...), each array raveled in C order; this is the order of
    the rows and columns of ``full_hessian``.

    Parameters
    ----------
    d : mapping str -> array
        Exactly the model's parameter names, each with its parameter's shape.
        Floating arrays (must be finite) give a float64 vector; if every array is
        boolean (a set of masks) the vector is boolean.
    model : MLP

    Returns
    -------
    numpy.ndarray of shape (P,), a new array.
    """
    check_model(model)
    checked = check_param_dict(d, model, "d", allow_bool=True)
    kinds = {a.dtype == np.bool_ for a in checked.values()}
    if len(kinds) > 1:
        raise TypeError("d must hold either all float arrays or all boolean arrays, got a mix")
    return np.concatenate([checked[n].ravel(order="C") for n in model.params])


def unflatten_params(vec: Any, model: MLP) -> dict[str, np.ndarray]:
    """Split a vector of length P into a dict shaped like ``model.params``.

    Inverse of ``flatten_params`` (same order, C order within each array).
    A float vector must be finite and becomes float64 arrays; a boolean vector
    gives boolean arrays. The returned arrays are new (never views of ``vec``).
    """
    check_model(model)
    arr = np.asarray(vec)
    if arr.dtype != np.bool_:
        arr = float_array(vec, "vec", ndim=1)
    P = n_params(model)
    if arr.ndim != 1 or arr.shape[0] != P:
        raise ValueError(
            f"vec must have shape ({P},) (the model's parameter count), got {arr.shape}"
        )
    out, start = {}, 0
    for n, p in model.params.items():
        out[n] = arr[start : start + p.size].reshape(p.shape).copy()
        start += p.size
    return out
