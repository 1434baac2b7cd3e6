"""IMP, rewinding, controls, gradual pruning and the trace, on tiny networks."""

import hashlib
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refprune.data import make_blobs
from refprune.lottery import (
    CONTROLS,
    Rewind,
    StepDecayLR,
    TrainConfig,
    decode_array,
    encode_array,
    imp_round,
    mask_sha256,
    random_masks_like,
    reinit_like,
    rewind_weights,
    run_imp,
    train_gradual,
)
from refprune.masks import keep_top_k
from refprune.mlp import MLP
from refprune.rng import make_rng
from refprune.schedules import cubic, geometric, linear
from refprune.train import train

SIZES = [4, 6, 5, 3]  # weights 6x4, 5x6, 3x5
W = ["layers.0.weight", "layers.1.weight", "layers.2.weight"]


@pytest.fixture(scope="module")
def data():
    X, y = make_blobs(60, n_features=4, n_classes=3, seed=0)
    return X[:45], y[:45], X[45:], y[45:]


def model(seed=0):
    return MLP(SIZES, "relu", seed=seed)


def cfg(**kw):
    base = dict(
        epochs=3, lr=0.05, batch_size=16, momentum=0.9, seed=7
    )  # 45 rows: 3 updates per epoch
    base.update(kw)
    return TrainConfig(**base)


def imp(data, **kw):
    X, y, Xt, yt = data
    kw.setdefault("train_config", cfg())
    return run_imp(kw.pop("model", None) or model(), X, y, X_test=Xt, y_test=yt, **kw)


def start_weights(rec):
    return {n: decode_array(e) for n, e in rec["rewound_weights"].items()}


def params_equal(a, b):
    return all(np.array_equal(a[n], b[n]) for n in a)


# ---------------------------------------------------------------- masks and counts
@pytest.mark.parametrize("rule", ["magnitude", "random", "taylor1", "gradient"])
@pytest.mark.parametrize("scope", ["layer", "global"])
def test_masks_are_nested_across_rounds(data, rule, scope):
    res = imp(data, rounds=4, alpha=0.3, rule=rule, scope=scope)
    for old, new in zip(res.masks, res.masks[1:]):
        assert all(np.all(new[n] <= old[n]) for n in new)


@pytest.mark.parametrize("rounding", ["round-half-even", "floor", "ceil"])
def test_layer_densities_follow_the_schedule_counts(data, rounding):
    res = imp(
        data, rounds=4, alpha=0.3, rounding=rounding, rate_multipliers={"layers.2.weight": 0.5}
    )
    for n in W:
        a = 0.3 * (0.5 if n == "layers.2.weight" else 1.0)
        expected = geometric(a, 4).alive_counts(res.masks[0][n].size, rounding)
        assert tuple(rec["alive"][n] for rec in res.trace["rounds"][1:]) == expected


def test_global_pool_follows_the_schedule_counts(data):
    res = imp(data, rounds=4, alpha=0.3, scope="global", rate_multipliers={"layers.2.weight": 0.5})
    pool = [
        rec["alive"]["layers.0.weight"] + rec["alive"]["layers.1.weight"]
        for rec in res.trace["rounds"][1:]
    ]
    assert tuple(pool) == geometric(0.3, 4).alive_counts(24 + 30)
    assert tuple(r["alive"]["layers.2.weight"] for r in res.trace["rounds"][1:]) == geometric(
        0.15, 4
    ).alive_counts(15)


def test_absolute_schedule_in_imp(data):
    sched = linear(0.2, 0.8, n_steps=3)
    res = imp(data, schedule=sched)
    for n in W:
        assert tuple(r["alive"][n] for r in res.trace["rounds"][1:]) == sched.alive_counts(
            res.masks[0][n].size
        )
    assert [r["target_density"] for r in res.trace["rounds"][1:]] == list(sched.densities())


def test_biases_are_untouched_unless_named(data):
    res = imp(data, rounds=2, alpha=0.5)
    assert all(res.masks[-1][f"layers.{l}.bias"].all() for l in range(3))
    res = imp(data, rounds=2, alpha=0.5, names=W + ["layers.0.bias"])
    assert (
        res.trace["rounds"][-1]["alive"]["layers.0.bias"] == geometric(0.5, 2).alive_counts(6)[-1]
    )


# ---------------------------------------------------------------- rewinding
def test_rewind_to_init_restores_w0_exactly(data):
    res = imp(data, rounds=3, alpha=0.4)
    w0 = model().params
    for r, rec in enumerate(res.trace["rounds"]):
        got = start_weights(rec)
        for n in w0:
            m = res.masks[r][n]
            assert np.array_equal(got[n][m], w0[n][m])  # survivors: w0, bit for bit
            assert np.all(got[n][~m] == 0.0)  # pruned: exactly zero


def test_late_rewinding_restores_the_step_k_weights_exactly(data):
    X, y, _, _ = data
    c = cfg(lr_schedule=StepDecayLR(0.05, (4,), 0.5))
    res = imp(data, rounds=2, alpha=0.4, rewind="step:3", train_config=c)
    wk = model()
    train(
        wk,
        X,
        y,
        epochs=1,
        batch_size=c.batch_size,
        momentum=c.momentum,
        lr_schedule=c.lr_schedule,
        seed=c.seed,
    )
    assert params_equal(res.rewind_params, wk.params)
    for r in (1, 2):
        got = start_weights(res.trace["rounds"][r])
        for n in got:
            m = res.masks[r][n]
            assert np.array_equal(got[n][m], wk.params[n][m]) and np.all(got[n][~m] == 0.0)


def test_late_rewinding_replays_the_rest_of_the_run(data):
    # pruning nothing, a round after rewinding to step K redoes steps K..T-1 from w_K with fresh momentum
    X, y, _, _ = data
    c = cfg(lr_schedule=StepDecayLR(0.05, (4,), 0.5))
    res = imp(data, schedule=geometric(0.0, 1), rewind="step:3", train_config=c)
    net = model()
    net.load_state_dict({"params": res.rewind_params})
    rng = make_rng(c.seed)
    rng.permutation(X.shape[0])  # the data order of the epoch before step 3
    train(
        net,
        X,
        y,
        epochs=2,
        batch_size=16,
        momentum=0.9,
        lr_schedule=c.lr_schedule,
        seed=rng,
        start_step=3,
    )
    assert params_equal(res.model.params, net.params)


@pytest.mark.parametrize(
    "k", [1, 2, 3, 5, 8, 9]
)  # 3 updates per epoch: K inside and at the edges of epochs
def test_late_rewinding_without_momentum_reproduces_round_zero(data, k):
    res = imp(data, schedule=geometric(0.0, 1), rewind=f"step:{k}", train_config=cfg(momentum=0.0))
    assert params_equal(res.model.params, res.dense_params)


def test_momentum_is_reset_on_rewinding(data):
    # round 1 prunes nothing and rewinds to w0: only a fresh momentum buffer gives round 0's weights again
    res = imp(data, schedule=geometric(0.0, 1), rewind="init", train_config=cfg(momentum=0.9))
    assert params_equal(res.model.params, res.dense_params)


def test_step_zero_is_init(data):
    a, b = imp(data, rounds=2, rewind="init"), imp(data, rounds=2, rewind="step:0")
    assert a.trace["rounds"] == b.trace["rounds"]


class Recorder:
    """A learning-rate schedule that remembers which steps asked for a rate."""

    def __init__(self):
        self.calls = []

    def __call__(self, t):
        self.calls.append(t)
        return 0.05 if t < 5 else 0.01


@pytest.mark.parametrize(
    "spec, per_round",
    [
        ("init", list(range(9))),
        ("lr", list(range(9))),
        ("step:6", [6, 7, 8]),
        ("finetune", [8]),
    ],
)
def test_learning_rate_schedule_per_rewinding_mode(data, spec, per_round):
    rec = Recorder()
    imp(data, rounds=2, rewind=spec, train_config=cfg(lr_schedule=rec))
    assert rec.calls == list(range(9)) + per_round + per_round  # round 0, then rounds 1 and 2


def test_learning_rate_rewinding_keeps_the_trained_weights(data):
    res = imp(
        data,
        rounds=1,
        alpha=0.4,
        rewind="lr",
        train_config=cfg(lr_schedule=StepDecayLR(0.05, (5,))),
    )
    got = start_weights(res.trace["rounds"][1])
    for n in got:
        assert np.array_equal(got[n], res.dense_params[n] * res.masks[1][n])
    assert res.rewind_params is None


def test_finetuning_continues_at_the_final_rate(data):
    X, y, _, _ = data
    c = cfg(lr_schedule=StepDecayLR(0.05, (5,), 0.2))
    res = imp(data, rounds=1, alpha=0.4, rewind="finetune", train_config=c)
    net = model()
    net.load_state_dict({"params": start_weights(res.trace["rounds"][1]), "masks": res.masks[1]})
    train(net, X, y, epochs=3, lr=0.05 * 0.2, batch_size=16, momentum=0.9, seed=c.seed)
    assert params_equal(res.model.params, net.params)


def test_imp_round_prunes_then_rewinds_without_touching_its_input(data):
    X, y, _, _ = data
    trained = model()
    train(trained, X, y, epochs=2, lr=0.05, batch_size=16)
    before = trained.state_dict()
    w0 = model().params
    net = imp_round(trained, w0, 0.5)
    assert params_equal(trained.params, before["params"]) and params_equal(
        trained.masks, before["masks"]
    )
    for n in W:
        k = trained.params[n].size - round(0.5 * trained.params[n].size)
        assert np.array_equal(net.masks[n], keep_top_k(np.abs(trained.params[n]), k))
        assert np.array_equal(net.params[n], w0[n] * net.masks[n])


# ---------------------------------------------------------------- controls
@pytest.fixture(scope="module")
def with_controls(data):
    return imp(data, rounds=3, alpha=0.4, controls=CONTROLS, reinit_seed=11, mask_seed=5)


def test_reinit_control_uses_the_same_masks_on_fresh_weights(with_controls):
    res = with_controls
    fresh = reinit_like(model(), 11)
    for r, rec in enumerate(res.trace["controls"]["reinit"], start=1):
        assert rec["mask_sha256"] == res.trace["rounds"][r]["mask_sha256"]
        got = start_weights(rec)
        assert all(np.array_equal(got[n], fresh[n] * res.masks[r][n]) for n in got)
        assert not np.array_equal(got[W[0]], res.init_params[W[0]] * res.masks[r][W[0]])


def test_random_masks_control_has_exact_counts_on_w0(with_controls):
    res = with_controls
    differs = False
    for r, rec in enumerate(res.trace["controls"]["random_masks"], start=1):
        assert rec["alive"] == res.trace["rounds"][r]["alive"]
        got = start_weights(rec)
        for n in got:
            alive = got[n] != 0.0
            assert np.array_equal(got[n][alive], res.init_params[n][alive])
        differs |= rec["mask_sha256"] != res.trace["rounds"][r]["mask_sha256"]
    assert differs


def test_random_masks_like_is_exact_and_seeded():
    masks = {
        "a": np.array([[True, False, True], [False, False, True]]),
        "b": np.ones(4, dtype=bool),
    }
    out = random_masks_like(masks, ["a"], seed=3)
    assert out["a"].sum() == 3 and out["b"].all()
    rng = make_rng(3)
    expected = np.zeros(6, dtype=bool)
    expected[rng.permutation(6)[:3]] = True
    assert np.array_equal(out["a"].ravel(), expected)


def test_one_shot_control_prunes_the_dense_weights_once(with_controls):
    res = with_controls
    for r, rec in enumerate(res.trace["controls"]["one_shot"], start=1):
        assert rec["alive"] == res.trace["rounds"][r]["alive"]
        got = start_weights(rec)
        for n in W:
            keep = keep_top_k(np.abs(res.dense_params[n]), rec["alive"][n])
            assert np.array_equal(got[n] != 0.0, keep & (res.init_params[n] != 0.0))
            assert np.array_equal(got[n], res.init_params[n] * keep)


def test_observe_sees_every_trained_network_in_trace_order(data):
    X, y, Xt, yt = data
    seen = []

    def observe(kind, index, net):
        seen.append((kind, index, net.loss_value(Xt, yt), net.density(W)))

    res = imp(data, rounds=2, alpha=0.4, controls=CONTROLS, reinit_seed=11, observe=observe)
    order = [("imp", r) for r in range(3)] + [(c, r) for c in CONTROLS for r in (1, 2)]
    assert [(k, i) for k, i, _, _ in seen] == order
    records = {("imp", r): rec for r, rec in enumerate(res.trace["rounds"])}
    records.update(
        {(c, r): rec for c in CONTROLS for r, rec in enumerate(res.trace["controls"][c], 1)}
    )
    for kind, index, loss, density in seen:
        assert loss == records[kind, index]["test_loss"]
        assert density == records[kind, index]["density"]
    with pytest.raises(TypeError, match="observe must be callable"):
        imp(data, rounds=1, observe=1)


def test_reinit_seed_equal_to_the_model_seed_is_refused(data):
    with pytest.raises(ValueError, match="reinit_seed=0 draws the model's own initial weights"):
        imp(data, rounds=1, controls=("reinit",), reinit_seed=0)


# ---------------------------------------------------------------- gradual pruning
def test_gradual_pruning_follows_the_cubic_schedule(data):
    X, y, Xt, yt = data
    sched = cubic(0.0, 0.8, t0=0, dt=2, n_steps=4)  # prunes after 0, 2, 4, 6, 8 of 9 updates
    res = train_gradual(model(), X, y, sched, X_test=Xt, y_test=yt, train_config=cfg())
    recs = res.trace["steps"]
    assert [r["step"] for r in recs] == [0, 2, 4, 6, 8]
    for n in W:
        assert tuple(r["alive"][n] for r in recs) == sched.alive_counts(model().params[n].size)
        assert np.all(res.model.params[n][~res.model.masks[n]] == 0.0)
    assert res.trace["final"]["density"] == recs[-1]["density"]
    json.dumps(res.trace, allow_nan=False)


def test_gradual_pruning_with_a_geometric_schedule_and_global_scope(data):
    X, y, _, _ = data
    sched = geometric(0.3, 3, start=1)
    res = train_gradual(model(), X, y, sched, scope="global", train_config=cfg())
    pool = [sum(r["alive"].values()) for r in res.trace["steps"]]
    assert tuple(pool) == sched.alive_counts(24 + 30 + 15)


def test_gradual_schedule_beyond_the_run_is_refused(data):
    X, y, _, _ = data
    with pytest.raises(ValueError, match="schedule steps must be <= the number of updates"):
        train_gradual(model(), X, y, cubic(0.0, 0.5, t0=5, dt=5, n_steps=2), train_config=cfg())


# ---------------------------------------------------------------- the trace
def test_trace_is_deterministic_json(data):
    a = imp(data, rounds=2, controls=CONTROLS, rule="random").to_json()
    b = imp(data, rounds=2, controls=CONTROLS, rule="random").to_json()
    assert a == b
    trace = json.loads(a)
    assert trace["format"] == "refprune.lottery-trace" and len(trace["rounds"]) == 3
    assert params_equal(start_weights(trace["rounds"][0]), model().params)


def test_trace_records_what_it_says(data):
    X, y, Xt, yt = data
    res = imp(data, rounds=2, alpha=0.5)
    net = res.model
    rec = res.trace["rounds"][-1]
    assert rec["mask_sha256"] == {
        n: hashlib.sha256(net.masks[n].astype(np.uint8).tobytes()).hexdigest() for n in net.masks
    }
    assert rec["test_accuracy"] == net.accuracy(Xt, yt) and rec["train_loss"] == net.loss_value(
        X, y
    )
    counts = np.bincount(yt, minlength=3)
    per_class = sum(a * c for a, c in zip(rec["per_class_test_accuracy"], counts)) / counts.sum()
    assert per_class == pytest.approx(rec["test_accuracy"], abs=1e-15)
    assert rec["density"] == net.density() and rec["layer_density"][W[0]] == net.density([W[0]])


def test_weights_formats(data):
    res = imp(data, rounds=1, weights_format="float")
    assert isinstance(res.trace["rounds"][0]["rewound_weights"][W[0]]["data"][0], float)
    assert "rewound_weights" not in imp(data, rounds=1, weights_format="none").trace["rounds"][0]


def test_mask_sha256_vector():
    # the bytes hashed are 01 00 00 01: one byte per entry, C order
    assert (
        mask_sha256(np.array([[True, False], [False, True]]))
        == hashlib.sha256(b"\x01\x00\x00\x01").hexdigest()
    )


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=12))
def test_encode_decode_round_trip(values):
    a = np.array(values + [-0.0, 5e-324])
    for fmt in ("hex", "float"):
        back = decode_array(json.loads(json.dumps(encode_array(a, fmt))))
        assert np.array_equal(back, a) and np.array_equal(np.signbit(back), np.signbit(a))


def test_run_imp_does_not_touch_the_model(data):
    m = model()
    before = m.state_dict()
    imp(data, model=m, rounds=2)
    assert params_equal(m.params, before["params"]) and params_equal(m.masks, before["masks"])


def test_rewind_weights_keeps_masks():
    m = model()
    m.set_mask(W[0], np.eye(6, 4, dtype=bool))
    rewind_weights(m, model(1).params)
    assert np.array_equal(m.params[W[0]], model(1).params[W[0]] * np.eye(6, 4, dtype=bool))


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(rewind="step:x"), "rewind must be 'step:K'"),
        (dict(rewind="later"), "unknown rewind"),
        (dict(rewind="step:12"), r"in \[0, 9\]"),
        (dict(controls=("shuffle",)), "unknown controls"),
        (dict(schedule=[0.2, 0.2]), "schedule must be a refprune Schedule"),
        (dict(names=["layers.9.weight"]), "names must be parameters"),
        (dict(names="layers.0.weight"), "names must be a sequence"),
        (dict(rule="biggest"), "unknown rule"),
        (dict(scope="net"), "unknown scope"),
        (dict(alpha=1.5), "alpha must be in"),
        (dict(weights_format="bin"), "unknown weights_format"),
        (dict(train_config=dict(epochs=1)), "train_config must be a TrainConfig"),
        (dict(rounds=3, alpha=1.0), "layer collapse"),
    ],
)
def test_bad_input(data, kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        imp(data, **kw)


def test_bad_config():
    with pytest.raises(ValueError, match="lr must be in"):
        TrainConfig(lr=0.0)
    with pytest.raises(ValueError, match="rewind step is only meaningful"):
        Rewind("init", 3)
    with pytest.raises(TypeError, match="rewind must be a string"):
        Rewind.parse(3)


# ---------------------------------------------------------------- command line
def test_cli_lottery_writes_a_trace(tmp_path, capsys):
    from refprune.__main__ import main

    out = tmp_path / "trace.json"
    assert (
        main(
            [
                "lottery",
                "--rounds",
                "1",
                "--epochs",
                "1",
                "--no-controls",
                "--weights",
                "none",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("round  1/1  density") and "elapsed" in line for line in lines)
    assert len(json.loads(out.read_text())["rounds"]) == 2


def test_cli_plot_without_matplotlib_names_the_extra(monkeypatch, tmp_path, capsys):
    import sys

    from refprune.__main__ import main

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SystemExit) as exit_:
        main(["lottery", "--rounds", "1", "--plot", str(tmp_path / "a.png")])
    assert exit_.value.code == 2
    assert "argument --plot: needs matplotlib" in capsys.readouterr().err


# ----------------------------------------------------------------- global scope, absolute targets
from unittest import mock  # noqa: E402

from conformance.backend import ReferenceBackend  # noqa: E402
from conformance.runner import run as run_conformance  # noqa: E402
from refprune.lottery import PruneSpec  # noqa: E402
from refprune.masks import fraction_to_count, prune  # noqa: E402
from refprune.schedules import one_shot  # noqa: E402


def test_global_one_shot_prunes_the_pool_as_one_group():
    # The minimal case: 1-3-1, 6 pooled weights, sparsity 0.5 keeps 3 (layer by layer kept 2).
    X = np.array([[0.5], [-1.0], [2.0]])
    res = run_imp(
        MLP([1, 3, 1], loss="mse", seed=0),
        X,
        X,
        schedule=one_shot(0.5),
        scope="global",
        train_config=TrainConfig(epochs=1, lr=0.01),
    )
    alive = res.trace["rounds"][1]["alive"]
    assert alive["layers.0.weight"] + alive["layers.1.weight"] == 3


def _pool_is_top_k(net_before, net_after, names, k):
    w = np.concatenate([np.abs(net_before.params[n]).ravel() for n in names])
    kept = np.concatenate([net_after.masks[n].ravel() for n in names])
    assert kept.sum() == k
    assert np.array_equal(kept, keep_top_k(w, k))


@pytest.mark.parametrize(
    "schedule",
    [one_shot(0.6), cubic(0.2, 0.7, n_steps=2), linear(0.1, 0.5, n_steps=3)],
    ids=["one_shot", "cubic", "linear"],
)
def test_absolute_schedules_rank_the_global_pool_across_layers_of_different_scales(schedule):
    net = model(3)
    for n, scale in zip(W, (4.0, 1.0, 0.25)):
        net.params[n] *= scale
    spec = PruneSpec(names=tuple(W), scope="global", allow_collapse=True)
    scores = {n: np.abs(net.params[n]) for n in W}
    for j, s in enumerate(schedule.values):
        before = net.copy()
        spec.apply(net, scores, schedule, j)
        n_pool = sum(net.masks[n].size for n in W)
        _pool_is_top_k(before, net, W, n_pool - fraction_to_count(s, n_pool))


def test_gradual_cubic_in_global_scope_keeps_the_pool_count(data):
    X, y, _, _ = data
    sched = cubic(0.2, 0.8, t0=0, dt=3, n_steps=3)
    res = train_gradual(model(1), X, y, sched, scope="global", train_config=cfg(epochs=4))
    n_pool = sum(model(1).masks[n].size for n in W)
    for rec, s in zip(res.trace["steps"], sched.values):
        assert sum(rec["alive"].values()) == n_pool - fraction_to_count(s, n_pool)


def test_one_shot_control_in_global_scope_keeps_the_pool_top_k_of_the_dense_weights(data):
    res = imp(data, rounds=3, alpha=0.5, scope="global", controls=["one_shot"])
    dense = np.concatenate([np.abs(res.dense_params[n]).ravel() for n in W])
    sizes = [res.dense_params[n].size for n in W]
    for rec, ctl in zip(res.trace["rounds"][1:], res.trace["controls"]["one_shot"]):
        k = sum(rec["alive"][n] for n in W)
        parts = np.split(keep_top_k(dense, k), np.cumsum(sizes)[:-1])
        for n, part in zip(W, parts):
            assert ctl["mask_sha256"][n] == mask_sha256(part.reshape(res.dense_params[n].shape))


def _old_prune_to_counts(self, model, scores, alive_targets):
    """The defect the golden cases imp/one-shot-global and imp/cubic-global were added for:
    the pool's count is right, but it is pruned layer by layer (``group is pool`` was never
    true of the two separately built lists)."""
    for group, k in zip(self.groups(), alive_targets):
        alive = sum(int(model.masks[g].sum()) for g in group.names)
        if alive > k:
            prune(
                model,
                scores,
                (alive - k) / alive,
                names=list(group.names),
                scope="layer",
                allow_collapse=self.allow_collapse,
            )


class LayerByLayerGlobalBackend(ReferenceBackend):
    """Prunes a global absolute target layer by layer."""

    def imp(self, **kwargs):
        with mock.patch.object(PruneSpec, "prune_to_counts", _old_prune_to_counts):
            return super().imp(**kwargs)


def test_conformance_catches_a_global_absolute_target_pruned_layer_by_layer():
    report = run_conformance(
        LayerByLayerGlobalBackend(), families=["lottery"], max_examples=10, shrink=False
    )
    failed = {r.id for r in report.failures}
    names = {r.id: r for r in report.results}
    failed_cases = {names[i].comment for i in failed if names[i].kind == "golden"}
    assert any("one-shot to sparsity 0.5 over the pool" in c for c in failed_cases), failed
    assert any("cubic schedule 0.2 -> 0.7 in 3 rounds, global pool" in c for c in failed_cases)
    assert {"lottery/imp-absolute-differential"} <= failed
    assert not any("each matrix on its own" in c for c in failed_cases)  # layer scope unaffected


# ----------------------------------------------------------------- the recorded target
def test_trace_records_the_applied_target_with_multipliers_and_the_schedules(data):
    X, y, _, _ = data
    last = "layers.2.weight"
    res = run_imp(
        model(), X, y, rounds=4, alpha=0.2, rate_multipliers={last: 0.5}, train_config=cfg(epochs=1)
    )
    sizes = {n: model().masks[n].size for n in W}
    total = sum(sizes.values())
    for r, rec in enumerate(res.trace["rounds"][1:], start=1):
        d = {n: 1.0 for n in W}
        for _ in range(r):
            d = {n: d[n] * (1.0 - 0.2 * (0.5 if n == last else 1.0)) for n in W}
        assert rec["target_density"] == pytest.approx(
            sum(sizes[n] * d[n] for n in W) / total, rel=1e-15
        )
        assert rec["schedule_density"] == geometric(0.2, 4).densities()[r - 1]
        assert rec["target_density"] > rec["schedule_density"]
        assert abs(rec["density"] - rec["target_density"]) <= len(W) * 1.0 / total  # rounding


def test_gradual_trace_records_the_applied_target_sparsity(data):
    X, y, _, _ = data
    sched = cubic(0.2, 0.6, t0=0, dt=2, n_steps=2)
    res = train_gradual(
        model(), X, y, sched, rate_multipliers={"layers.2.weight": 0.5}, train_config=cfg(epochs=2)
    )
    sizes = [model().masks[n].size for n in W]
    for rec, s in zip(res.trace["steps"], sched.values):
        want = (sizes[0] * s + sizes[1] * s + sizes[2] * s * 0.5) / sum(sizes)
        assert rec["target_sparsity"] == pytest.approx(want, rel=1e-15)
        assert rec["schedule_sparsity"] == s


# ---------------------------------------------------------------- spec objects
def test_spec_objects_and_flat_keywords_give_the_same_trace(data):
    from refprune.lottery import Controls, PruneSpec

    last = {"layers.2.weight": 0.5}
    flat = imp(
        data,
        rounds=2,
        alpha=0.3,
        rule="random",
        scope="global",
        rate_multipliers=last,
        rewind="step:2",
        score_seed=3,
        controls=CONTROLS,
        reinit_seed=11,
        mask_seed=5,
    )
    spec = imp(
        data,
        schedule=geometric(0.3, 2),
        rewind=Rewind("step", 2),
        score_seed=3,
        pruning=PruneSpec("random", scope="global", rate_multipliers=last),
        controls=Controls(CONTROLS, reinit_seed=11, mask_seed=5),
    )
    assert spec.to_json() == flat.to_json()


def test_pruning_spec_and_its_fields_as_keywords_are_refused_together(data):
    from refprune.lottery import PruneSpec

    with pytest.raises(TypeError, match="either pruning or its fields"):
        imp(data, rounds=1, pruning=PruneSpec(), scope="global")
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['epochs'\\]"):
        imp(data, rounds=1, epochs=3)
