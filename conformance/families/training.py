"""Family "training": full-batch masked SGD steps with momentum, Nesterov, coupled and decoupled
weight decay, a per-step learning rate, pruning in the middle of training and rewinding, under
each convention of where the mask is applied (docs/training.md)."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from . import CaseSpec, Family, Property, close
from .networks import network, random_masks

ALGORITHM = """\
train_steps(params, masks, X, y, activation, loss, lr_schedule, momentum, nesterov, weight_decay,
decoupled, mask_at, prune_at, record): T = len(lr_schedule) full-batch updates
(refprune.train.train_steps).
theta_0 = params, M = masks (None: all alive). Update t: g = gradient of the mean loss over (X, y)
in the effective weights theta * M (the dense network's gradient at that point, not masked);
d = g * M (not under "weights") + wd * theta (coupled decay only); v = mu * v + d (v = d at the first
update and after a rewind); u = d + mu * v (nesterov), v (mu > 0) or d; s = u + wd * theta
(decoupled decay only, SGDW: Loshchilov and Hutter 2019); theta = theta - lr_schedule[t] * s.
torch.optim.SGD semantics, dampening 0.
mask_at "update": s * M; theta and v are 0.0 at pruned entries from the start, and the weight and
velocity of an entry pruned at step t are zeroed before update t. "weights": g not masked;
theta = (theta - lr_t s) * M after every update and at pruning; v never masked. "gradient"
(torch.nn.utils.prune: weight = weight_orig * mask): only g is masked; theta = weight_orig is never
zeroed, decay and momentum keep moving its pruned entries; v kept at pruning.
prune_at: list of {"step": t, "masks": nested masks of every parameter, "rewind": params or null}
in increasing step order: before update t the masks change; with a rewind theta = rewind values and
the velocity is reset; then the zeroing of mask_at.
Result: params = [theta_0, ..., theta_T] (theta_0 after the initial zeroing), velocity = [v_1, ...,
v_T] (v = d when mu = 0); record "last": [theta_T] and [v_T] only (the golden cases). The effective
weights theta_t * M_t are the same under every mask_at."""

NOTES = {
    "mask-at:update": "the mask on the whole step; weight and velocity of pruned entries zeroed",
    "mask-at:weights": "the mask on the weights after each update; gradient and velocity unmasked",
    "mask-at:gradient": "the mask on the gradient only (torch.nn.utils.prune): weight_orig and "
    "the velocity of pruned entries keep moving under decay and momentum",
    "plain": "no momentum, no weight decay",
    "heavy-ball": "heavy-ball momentum 0.9 (torch.optim.SGD, dampening 0)",
    "nesterov": "Nesterov momentum 0.9: u = d + mu * v",
    "coupled-decay": "weight decay as L2 in the gradient (torch.optim.SGD's weight_decay)",
    "decoupled-decay": "decoupled weight decay, theta -= lr * wd * theta (SGDW)",
    "lr-schedule": "the learning rate changes from update to update",
    "lr-zero": "every learning rate 0: the parameters never move",
    "initial-masks": "some entries pruned from the start (their given values are not 0)",
    "dense": "no masks at all (None)",
    "trajectory": "record 'all': the state after every update, not only the last",
    "all-alive": "masks given, every entry alive: the same as no masks",
    "prune-mid-training": "entries pruned in the middle of training, with live optimizer state",
    "rewind": "a rewind in the middle of training: weights reset, optimizer state reset",
    "biases-pruned": "some bias entries pruned as well",
    "mse": "mean squared error loss",
}

T = 4


def _nested(masks: dict[str, np.ndarray], seed: int, keep: float) -> dict[str, np.ndarray]:
    """A sub-mask: each alive weight entry stays alive with probability ``keep`` (seeded)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    return {
        n: (m & (rng.random(m.shape) < keep)) if n.endswith("weight") else m.copy()
        for n, m in masks.items()
    }


def _schedule(kind: str) -> np.ndarray:
    if kind == "constant":
        return np.full(T, 0.5)
    if kind == "zero":
        return np.zeros(T)
    return np.array([1.0, 0.5, 0.5, 0.25])  # step decay


OPTIMIZERS = {
    "plain": (
        {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "decoupled": False},
        ["plain"],
    ),
    "heavy-ball-coupled": (
        {"momentum": 0.9, "nesterov": False, "weight_decay": 0.05, "decoupled": False},
        ["heavy-ball", "coupled-decay"],
    ),
    "nesterov-decoupled": (
        {"momentum": 0.9, "nesterov": True, "weight_decay": 0.05, "decoupled": True},
        ["nesterov", "decoupled-decay"],
    ),
    "nesterov-coupled": (
        {"momentum": 0.9, "nesterov": True, "weight_decay": 0.05, "decoupled": False},
        ["nesterov", "coupled-decay"],
    ),
    "heavy-ball-decoupled": (
        {"momentum": 0.9, "nesterov": False, "weight_decay": 0.05, "decoupled": True},
        ["heavy-ball", "decoupled-decay"],
    ),
}


def _cases() -> list[CaseSpec]:
    out = []
    net = network(1601, [2, 3, 3], "tanh", "cross_entropy", n=5, scale=1.0)
    params = net["params"]
    m0 = random_masks(params, 1602, 0.75)
    m1 = _nested(m0, 1603, 0.6)
    rewind_to = {n: p.copy() for n, p in params.items()}
    events = {
        "none": (None, []),
        "prune": ([{"step": 1, "masks": m1, "rewind": None}], ["prune-mid-training"]),
        "rewind": (
            [{"step": 2, "masks": m1, "rewind": rewind_to}],
            ["rewind", "prune-mid-training"],
        ),
    }
    every = [
        ("plain", "none", "constant"),
        ("heavy-ball-coupled", "prune", "constant"),
        ("nesterov-decoupled", "prune", "decay"),
        ("nesterov-coupled", "rewind", "decay"),
        ("heavy-ball-decoupled", "rewind", "constant"),
    ]
    chosen = {"update": every, "gradient": every[1:], "weights": [every[1], every[3]]}
    for mask_at in ("update", "weights", "gradient"):
        for opt, ev, sched in chosen[mask_at]:
            options, oflags = OPTIMIZERS[opt]
            prune_at, eflags = events[ev]
            flags = [f"mask-at:{mask_at}"] + oflags + ["initial-masks"] + eflags
            flags += ["lr-schedule"] if sched == "decay" else []
            comment = (
                f"{T} full-batch updates of a tanh 2-3-3 network, {opt.replace('-', ' ')}, "
                f"mask on the {mask_at}, 3/4 of the weights alive"
                + {
                    "none": "",
                    "prune": "; 40% of the alive weights pruned before update 1",
                    "rewind": "; pruned and rewound to the initial weights before update 2",
                }[ev]
                + ("; lr 1, 0.5, 0.5, 0.25" if sched == "decay" else "; lr 0.5")
            )
            out.append(
                CaseSpec(
                    f"train_steps/{mask_at}/{opt}/{ev}",
                    "train_steps",
                    comment,
                    flags,
                    dict(
                        net,
                        masks=m0,
                        lr_schedule=_schedule(sched),
                        mask_at=mask_at,
                        prune_at=prune_at,
                        record="last",
                        **options,
                    ),
                )
            )
    hb = OPTIMIZERS["heavy-ball-coupled"][0]
    out.append(
        CaseSpec(
            "train_steps/update/heavy-ball-coupled/prune/all",
            "train_steps",
            "the whole trajectory (record 'all') of the heavy-ball case with a pruning "
            "before update 1: every weight and velocity after every update",
            [
                "mask-at:update",
                "heavy-ball",
                "coupled-decay",
                "initial-masks",
                "prune-mid-training",
                "trajectory",
            ],
            dict(
                net,
                masks=m0,
                lr_schedule=_schedule("constant"),
                mask_at="update",
                prune_at=events["prune"][0],
                record="all",
                **hb,
            ),
        )
    )
    alive = {n: np.ones(p.shape, dtype=bool) for n, p in params.items()}
    for key, masks, comment in [
        ("dense", None, "no masks (None): plain heavy-ball SGD with coupled decay, the baseline"),
        ("all-alive", alive, "masks given with every entry alive: equal to the dense case"),
    ]:
        out.append(
            CaseSpec(
                f"train_steps/update/{key}",
                "train_steps",
                comment,
                ["mask-at:update", "heavy-ball", "coupled-decay", key],
                dict(
                    net,
                    masks=masks,
                    lr_schedule=_schedule("constant"),
                    mask_at="update",
                    prune_at=None,
                    record="last",
                    **hb,
                ),
            )
        )
    for mask_at in ("gradient",):
        out.append(
            CaseSpec(
                f"train_steps/{mask_at}/lr-zero",
                "train_steps",
                f"every rate 0, mask on the {mask_at}, heavy-ball with coupled decay: "
                "the parameters stay as they start",
                [f"mask-at:{mask_at}", "heavy-ball", "coupled-decay", "lr-zero", "initial-masks"],
                dict(
                    net,
                    masks=m0,
                    lr_schedule=_schedule("zero"),
                    mask_at=mask_at,
                    prune_at=None,
                    record="last",
                    **hb,
                ),
            )
        )
    mse = network(1611, [2, 3, 2], "relu", "mse", n=4, scale=1.0)
    nd = OPTIMIZERS["nesterov-decoupled"][0]
    mm = random_masks(mse["params"], 1612, 0.7, biases=True)
    for mask_at in ("update", "gradient"):
        out.append(
            CaseSpec(
                f"train_steps/{mask_at}/mse-biases",
                "train_steps",
                f"relu 2-3-2 network, mse, biases pruned too, Nesterov with decoupled "
                f"decay, mask on the {mask_at}, a further pruning before update 1",
                [
                    f"mask-at:{mask_at}",
                    "nesterov",
                    "decoupled-decay",
                    "initial-masks",
                    "biases-pruned",
                    "prune-mid-training",
                    "mse",
                    "lr-schedule",
                ],
                dict(
                    mse,
                    masks=mm,
                    lr_schedule=_schedule("decay"),
                    mask_at=mask_at,
                    prune_at=[{"step": 1, "masks": _nested(mm, 1613, 0.5), "rewind": None}],
                    record="last",
                    **nd,
                ),
            )
        )
    return out


def tolerance(op: str, expected: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """Parameters and velocities close (golden cases: per-entry scales); an expected 0.0 whose
    scale is 0 (a pruned weight, a zeroed velocity) must be exactly 0."""
    return close(expected, rel=1e-9)


# ----------------------------------------------------------------------------- properties
MASK_AT = ("update", "weights", "gradient")


def _seeded_masks(
    rng: np.random.Generator, like: dict[str, np.ndarray], density: float, biases: bool
) -> dict[str, np.ndarray]:
    return {
        n: (rng.random(m.shape) < density) & m if n.endswith("weight") or biases else m.copy()
        for n, m in like.items()
    }


@st.composite
def _example(
    draw,
    *,
    events: bool | None = None,
    mask_at: tuple[str, ...] = MASK_AT,
    momentum: float | None = None,
    rewind: bool | None = None,
    record: str = "all",
):
    """train_steps arguments: a small network, 1-4 updates, any optimizer and convention;
    ``events`` True / False / None: a pruning (or rewinding) event always / never / sometimes.

    Hypothesis draws the structure (sizes, options, densities, a seed); the arrays come from
    the seed (``networks.network``, multiples of 1/64), which keeps the examples cheap."""
    n_layers = draw(st.integers(1, 2))
    loss = draw(st.sampled_from(["cross_entropy", "mse"]))
    sizes = draw(st.lists(st.integers(1, 3), min_size=n_layers + 1, max_size=n_layers + 1))
    if loss == "cross_entropy":
        sizes[-1] = max(sizes[-1], 2)
    seed = draw(st.integers(0, 2**32 - 1))
    net = network(
        seed,
        sizes,
        draw(st.sampled_from(["relu", "tanh"])),
        loss,
        n=draw(st.integers(1, 4)),
        scale=draw(st.sampled_from([0.5, 1.0, 2.0])),
    )
    params = net["params"]
    rng = np.random.Generator(np.random.PCG64(seed + 1))
    n_steps = draw(st.integers(1, 4))
    rates = np.array(
        draw(st.lists(st.sampled_from([0.05, 0.1, 0.25, 0.5]), min_size=n_steps, max_size=n_steps)),
        dtype=np.float64,
    )
    mu = draw(st.sampled_from([0.0, 0.5, 0.9])) if momentum is None else momentum
    nesterov = bool(mu) and draw(st.booleans())
    wd = draw(st.sampled_from([0.0, 0.1]))
    alive = {n: np.ones(p.shape, dtype=bool) for n, p in params.items()}
    masks = None
    if draw(st.integers(0, 4)):
        masks = _seeded_masks(
            rng, alive, draw(st.sampled_from([1.0, 0.7, 0.4])), draw(st.booleans())
        )
    prune_at = None
    if events or (events is None and draw(st.booleans())):
        with_rewind = draw(st.booleans()) if rewind is None else rewind
        later = _seeded_masks(
            rng, masks or alive, draw(st.sampled_from([0.7, 0.4, 0.0])), draw(st.booleans())
        )
        back = (
            network(seed + 2, sizes, net["activation"], loss, n=1)["params"]
            if with_rewind
            else None
        )
        prune_at = [{"step": draw(st.integers(0, n_steps - 1)), "masks": later, "rewind": back}]
    return dict(
        net,
        masks=masks,
        lr_schedule=rates,
        momentum=mu,
        nesterov=nesterov,
        weight_decay=wd,
        decoupled=draw(st.booleans()),
        mask_at=draw(st.sampled_from(mask_at)),
        prune_at=prune_at,
        record=draw(st.sampled_from(["all", "last"])) if record == "either" else record,
    )


def _masks_over_time(ex: dict[str, Any]) -> list[dict[str, np.ndarray]]:
    """M_t for t = 0 .. T (the masks theta_t was produced under; M_0 the initial ones)."""
    params = ex["params"]
    current = ex["masks"] or {n: np.ones(p.shape, bool) for n, p in params.items()}
    events = {e["step"]: e["masks"] for e in ex["prune_at"] or []}
    out = [current]
    for t in range(len(ex["lr_schedule"])):
        current = events.get(t, current)
        out.append(current)
    return out


def _differential(c, ex):
    c.agree("train_steps", **ex)


def _pruned_stay_zero(c, ex):
    """Under "update" and "weights" every pruned weight is exactly 0.0 after every update
    (and at the start); under "update" its velocity too."""
    out = c.call("train_steps", **ex)
    masks = _masks_over_time(ex)
    for t, theta in enumerate(out["params"]):
        for n, m in masks[t].items():
            bad = np.asarray(theta[n])[~m]
            c.require(
                np.all(bad == 0.0),
                lambda: f"params[{t}][{n!r}]: a pruned entry is {bad[bad != 0.0][0]!r}, not 0.0",
            )
    if ex["mask_at"] == "update":
        for t, v in enumerate(out["velocity"], start=1):
            for n, m in masks[t].items():
                bad = np.asarray(v[n])[~m]
                c.require(
                    np.all(bad == 0.0),
                    lambda: (
                        f"velocity[{t}][{n!r}]: a pruned entry's "
                        f"velocity is {bad[bad != 0.0][0]!r}, not 0.0"
                    ),
                )


def _pruned_example():
    return _example(mask_at=("update", "weights"))


def _lr_zero(c, ex):
    """Every rate 0: theta_t = theta_0 for every t, and theta_0 = params (* M unless "gradient")."""
    ex = dict(ex, lr_schedule=np.zeros_like(ex["lr_schedule"]), prune_at=None)
    out = c.call("train_steps", **ex)
    masks = ex["masks"] or {n: np.ones(p.shape, bool) for n, p in ex["params"].items()}
    for n, p in ex["params"].items():
        start = p if ex["mask_at"] == "gradient" else np.where(masks[n], p, 0.0)
        for t, theta in enumerate(out["params"]):
            c.require(
                np.array_equal(np.asarray(theta[n]), start),
                lambda: f"params[{t}][{n!r}] moved with every learning rate 0",
            )


def _all_alive(c, ex):
    """Masks with every entry alive give the dense (unmasked) SGD trajectory."""
    ex = dict(ex, prune_at=None, masks=None)
    alive = {n: np.ones(p.shape, dtype=bool) for n, p in ex["params"].items()}
    dense = c.call("train_steps", **ex)
    masked = c.call("train_steps", **dict(ex, masks=alive))
    c.same("train_steps", dense, masked, ex)


def _conventions_agree(c, ex):
    """theta_t * M_t is the same under "update", "weights" and "gradient"."""
    masks = _masks_over_time(ex)
    runs = {m: c.call("train_steps", **dict(ex, mask_at=m)) for m in MASK_AT}
    eff = {
        m: [
            {n: np.where(masks[t][n], np.asarray(th[n]), 0.0) for n in th}
            for t, th in enumerate(r["params"])
        ]
        for m, r in runs.items()
    }
    tol = close(eff["update"], rel=1e-9)
    from ..compare import compare

    for m in ("weights", "gradient"):
        diff = compare(eff["update"], eff[m], tol, where="effective weights")
        c.require(
            not diff,
            lambda: f"mask_at={m!r} computes other effective weights than 'update':\n{diff}",
        )


def _rewind_restarts(c, ex):
    """After a rewind at step k the run is a fresh run from the rewind values and masks with
    the rates lr_schedule[k:]: no optimizer state survives a rewind."""
    (event,) = ex["prune_at"]
    k = event["step"]
    full = c.call("train_steps", **ex)
    fresh = c.call(
        "train_steps",
        **dict(
            ex,
            params=event["rewind"],
            masks=event["masks"],
            lr_schedule=ex["lr_schedule"][k:],
            prune_at=None,
        ),
    )
    tail = {"params": full["params"][k + 1 :], "velocity": full["velocity"][k:]}
    head = {"params": fresh["params"][1:], "velocity": fresh["velocity"]}
    from ..compare import compare

    diff = compare(head, tail, close(head, rel=1e-9), where="after the rewind")
    c.require(not diff, lambda: f"the run after a rewind at step {k} is not a fresh run:\n{diff}")


def _rewind_example():
    return _example(events=True, rewind=True, momentum=0.9)


def _step_follows_velocity(c, ex):
    """theta_t - theta_{t+1} = lr_t * (u + wd * theta_t [decoupled]) at alive entries, u from the
    returned velocities: v_{t+1} (heavy-ball) or d + mu v_{t+1} with d = v_{t+1} - mu v_t
    (Nesterov; v_0 = 0)."""
    out = c.call("train_steps", **ex)
    mu, wd, rates = ex["momentum"], ex["weight_decay"], ex["lr_schedule"]
    masks = ex["masks"] or {n: np.ones(p.shape, bool) for n, p in ex["params"].items()}
    for t in range(len(rates)):
        for n, m in masks.items():
            th0, th1 = np.asarray(out["params"][t][n]), np.asarray(out["params"][t + 1][n])
            v1 = np.asarray(out["velocity"][t][n])
            v0 = np.asarray(out["velocity"][t - 1][n]) if t else np.zeros_like(v1)
            d = v1 - mu * v0  # v_{t+1} = mu v_t + d
            u = d + mu * v1 if ex["nesterov"] else v1
            s = u + wd * th0 if ex["decoupled"] else u
            lhs, rhs = (th0 - th1)[m], (rates[t] * s)[m]
            scale = 1e-9 * (1.0 + np.abs(th0) + rates[t] * (np.abs(s) + np.abs(v1) + np.abs(v0)))[m]
            c.require(
                np.all(np.abs(lhs - rhs) <= scale),
                lambda: (
                    f"update {t}, {n!r}: the step {lhs} is not lr * "
                    f"{'Nesterov' if ex['nesterov'] else 'heavy-ball'} "
                    f"{'+ decoupled decay' if ex['decoupled'] else ''} of the "
                    f"velocities ({rhs})"
                ),
            )


PROPERTIES = [
    Property(
        "training/differential",
        ("train_steps",),
        "a short training run (any optimizer, convention, pruning, rewind) equals the reference's",
        _example(record="either"),
        _differential,
    ),
    Property(
        "training/pruned-stay-zero",
        ("train_steps",),
        "under mask_at update and weights a pruned weight is exactly 0.0 forever (update: its "
        "velocity too), through momentum, weight decay and mid-training pruning",
        _pruned_example(),
        _pruned_stay_zero,
    ),
    Property(
        "training/lr-zero",
        ("train_steps",),
        "every learning rate 0: the parameters never move",
        _example(events=False),
        _lr_zero,
    ),
    Property(
        "training/all-alive-is-dense",
        ("train_steps",),
        "masks with every entry alive give the unmasked SGD trajectory",
        _example(events=False),
        _all_alive,
    ),
    Property(
        "training/conventions-agree",
        ("train_steps",),
        "the effective weights theta * M are the same under every mask_at",
        _example(),
        _conventions_agree,
    ),
    Property(
        "training/rewind-restarts",
        ("train_steps",),
        "after a rewind the run is a fresh run: no optimizer state survives it",
        _rewind_example(),
        _rewind_restarts,
    ),
    Property(
        "training/step-follows-velocity",
        ("train_steps",),
        "each step is lr * (heavy-ball or Nesterov direction of the returned velocities, plus "
        "the decoupled decay)",
        _example(events=False, momentum=0.9),
        _step_follows_velocity,
    ),
]

FAMILY = Family(
    name="training",
    algorithm=ALGORITHM,
    notes=NOTES,
    cases=_cases,
    tolerance=tolerance,
    properties=PROPERTIES,
)
