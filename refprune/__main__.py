"""Command line: ``python -m refprune demo``, ``lottery``, ``sweep`` and ``sweep-report``."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import numpy as np

    from .lottery import Rewind

# Per-dataset defaults of the lottery command: network, data and training.
LOTTERY_DEFAULTS: dict[str, dict[str, Any]] = {
    # sparse teacher 20-32-4 (density 0.2), 1500 points, student 20-48-24-4
    "teacher": {
        "hidden": (48, 24),
        "classes": 4,
        "epochs": 8,
        "lr": 0.05,
        "batch_size": 32,
        "momentum": 0.9,
    },
    # scikit-learn's 8x8 digits, the LeNet-300-100 shape of Frankle and Carbin (2019)
    "digits": {
        "hidden": (300, 100),
        "classes": 10,
        "epochs": 20,
        "lr": 0.1,
        "batch_size": 64,
        "momentum": 0.9,
    },
}
CONTROL_LABELS = {
    "imp": "winning ticket",
    "reinit": "random reinit",
    "random_masks": "random masks",
    "one_shot": "one-shot",
}


# ---------------------------------------------------------------- argument types
# Each returns the parsed value or raises argparse.ArgumentTypeError, which argparse turns into
# the usage line and "argument --name: <message>", exit status 2.
def _integer(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def _real(
    low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = False
) -> Callable[[str], float]:
    interval = (
        f"{'(' if low_open else '['}{low:g}, {'inf' if high == math.inf else f'{high:g}'}"
        f"{')' if high_open or high == math.inf else ']'}"
    )

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number in {interval}, got {text}")
        too_low = value <= low if low_open else value < low
        too_high = value >= high if high_open else value > high
        if too_low or too_high:
            raise argparse.ArgumentTypeError(f"must be in {interval}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


def _alpha(text: str) -> float:
    value = _real(0.0, 1.0)(text)
    if value == 1.0:
        raise argparse.ArgumentTypeError(
            "must be < 1: alpha 1 prunes every alive weight in the first round"
        )
    return value


def _rewind(text: str) -> Rewind:
    from .lottery import Rewind

    try:
        return Rewind.parse(text)
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _output_path(text: str) -> str:
    folder = os.path.dirname(os.path.abspath(text)) if text else ""
    if not text or os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"expected a file path, got {text!r}")
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"directory {folder!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"directory {folder!r} is not writable")
    return text


def _demo(args: argparse.Namespace) -> int:
    from .data import make_blobs, train_test_split
    from .mlp import MLP
    from .train import train

    X, y = make_blobs(600, n_features=2, n_classes=3, seed=args.seed)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, seed=args.seed)
    model = MLP([2, 32, 32, 3], "relu", seed=args.seed)
    hist = train(
        model,
        X_tr,
        y_tr,
        epochs=args.epochs,
        lr=0.05,
        batch_size=32,
        momentum=0.9,
        seed=args.seed,
        X_test=X_te,
        y_test=y_te,
    )
    print(
        f"MLP 2-32-32-3 on 3 Gaussian blobs (seed {args.seed}): "
        f"train accuracy {hist.accuracy[-1]:.3f}, test accuracy {hist.test_accuracy[-1]:.3f}"
    )
    return 0


def _lottery_data(dataset: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from .data import load_digits, make_teacher_student, train_test_split

    if dataset == "digits":
        X, y = load_digits()
    else:
        X, y, _ = make_teacher_student(1500, (20, 32, 4), density=0.2, seed=seed)
    return train_test_split(X, y, test_fraction=0.25, seed=seed)


def _fmt(acc: float | None) -> str:
    return "  n/a " if acc is None else f"{acc:.4f}"


def _collapsing_round(
    sizes: list[int], alpha: float, rounds: int, output_rate: float, scope: str
) -> tuple[str, int] | None:
    """The first (group, round) whose alive count the schedule takes to 0, if any.

    Exact for every group whose count does not depend on the scores: each
    matrix in layer scope, the pool and the output matrix in global scope.
    """
    from .schedules import geometric

    weights = [(f"layers.{i}.weight", sizes[i] * sizes[i + 1]) for i in range(len(sizes) - 1)]
    last, n_last = weights[-1]
    if scope == "layer":
        groups = [(name, n, alpha * (output_rate if name == last else 1.0)) for name, n in weights]
    elif output_rate == 1.0:
        groups = [("the global pool", sum(n for _, n in weights), alpha)]
    else:
        groups = [
            ("the global pool", sum(n for _, n in weights[:-1]), alpha),
            (last, n_last, alpha * output_rate),
        ]
    for name, n, f in groups:
        counts = geometric(f, rounds).alive_counts(n)
        if 0 in counts:
            return name, counts.index(0) + 1
    return None


def _lottery(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .lottery import CONTROLS, TrainConfig, run_imp
    from .mlp import MLP

    defaults = LOTTERY_DEFAULTS[args.dataset]
    if args.alpha * args.output_rate > 1.0:
        parser.error(
            f"argument --output-rate: alpha x output rate must be <= 1, got "
            f"{args.alpha} x {args.output_rate}"
        )
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error(
                "argument --plot: needs matplotlib, from the 'experiments' extra: "
                "pip install 'refprune[experiments]'"
            )
    try:
        X_tr, X_te, y_tr, y_te = _lottery_data(args.dataset, args.seed)
    except ImportError as exc:
        parser.error(f"argument --dataset: {exc}")
    hidden = defaults["hidden"]
    sizes = [X_tr.shape[1], *hidden, defaults["classes"]]
    epochs = defaults["epochs"] if args.epochs is None else args.epochs
    lr = defaults["lr"] if args.lr is None else args.lr
    batch_size = defaults["batch_size"] if args.batch_size is None else args.batch_size
    momentum = defaults["momentum"] if args.momentum is None else args.momentum
    cfg = TrainConfig(
        epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum, seed=args.seed
    )
    rw = args.rewind
    total = cfg.epochs * cfg.steps_per_epoch(X_tr.shape[0])
    if rw.mode == "step" and rw.step > total:
        parser.error(
            f"argument --rewind: step K must be in [0, {total}] (the updates of a "
            f"round: {cfg.epochs} epochs of {cfg.steps_per_epoch(X_tr.shape[0])}), "
            f"got {rw.step}"
        )
    collapse = _collapsing_round(sizes, args.alpha, args.rounds, args.output_rate, args.scope)
    if collapse is not None:
        parser.error(
            f"argument --alpha: alpha {args.alpha} over {args.rounds} rounds leaves "
            f"{collapse[0]} with no alive weight at round {collapse[1]} (layer "
            "collapse); lower --alpha or --rounds"
        )
    model = MLP(sizes, "relu", seed=args.seed)
    last = f"layers.{len(sizes) - 2}.weight"
    multipliers = None if args.output_rate == 1.0 else {last: args.output_rate}
    controls = () if args.no_controls else CONTROLS
    arch = "-".join(str(s) for s in sizes)
    print(
        f"IMP on {args.dataset} ({X_tr.shape[0]} train / {X_te.shape[0]} test), MLP {arch} ReLU, "
        f"rule {args.rule}, {args.scope} scope, alpha {args.alpha}, output layer x{args.output_rate}, "
        f"rewind {rw}, {cfg.epochs} epochs per round, SGD lr {cfg.lr} momentum {cfg.momentum} "
        f"batch {cfg.batch_size}, seed {args.seed}"
    )

    def progress(kind: str, rec: dict[str, Any]) -> None:
        label = "round" if kind == "imp" else f"  {CONTROL_LABELS[kind]:<13s} round"
        print(
            f"{label} {rec['round']:2d}/{args.rounds}  density {rec['density']:.4f}  "
            f"test acc {_fmt(rec['test_accuracy'])}  train acc {_fmt(rec['train_accuracy'])}  "
            f"elapsed {rec['elapsed']:6.1f} s",
            flush=True,
        )

    try:
        res = run_imp(
            model,
            X_tr,
            y_tr,
            X_test=X_te,
            y_test=y_te,
            rounds=args.rounds,
            alpha=args.alpha,
            rule=args.rule,
            scope=args.scope,
            rate_multipliers=multipliers,
            rewind=rw,
            train_config=cfg,
            score_seed=args.seed,
            controls=controls,
            reinit_seed=args.seed + 1,
            mask_seed=args.seed + 2,
            weights_format=args.weights,
            progress=progress,
        )
    except ValueError as exc:  # what only the run can tell (one layer of the pool collapsing)
        parser.error(str(exc))
    _summary(res.trace)
    if args.out:
        res.to_json(args.out)
        print(f"trace written to {args.out}")
    if args.plot:
        _plot(res.trace, args.plot, f"{args.dataset}: MLP {arch}, rewind {rw}")
        print(f"plot written to {args.plot}")
    return 0


def _summary(trace: dict[str, Any]) -> None:
    rounds = trace["rounds"]
    cols = ["imp", *trace["controls"]]
    print("\ntest accuracy by density")
    print("round  density  " + "  ".join(f"{CONTROL_LABELS[c]:>14s}" for c in cols))
    for r, rec in enumerate(rounds):
        row = [rec["test_accuracy"]] + [
            None if r == 0 else trace["controls"][c][r - 1]["test_accuracy"] for c in cols[1:]
        ]
        print(f"{r:5d}  {rec['density']:7.4f}  " + "  ".join(f"{'':>8s}{_fmt(a)}" for a in row))


def _plot(trace: dict[str, Any], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    series = {"imp": trace["rounds"], **trace["controls"]}
    for kind, recs in series.items():
        if kind != "imp":
            recs = trace["rounds"][:1] + recs  # every curve starts at the dense network
        ax.plot(
            [r["density"] for r in recs],
            [r["test_accuracy"] for r in recs],
            marker="o",
            ms=3,
            label=CONTROL_LABELS[kind],
        )
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("density (fraction of weights left)")
    ax.set_ylabel("test accuracy")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from .scores import RULES

    parser = argparse.ArgumentParser(prog="refprune", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train a small MLP on Gaussian blobs and print its accuracy")
    demo.add_argument("--seed", type=_integer(0), default=0)
    demo.add_argument("--epochs", type=_integer(1), default=20)
    demo.set_defaults(func=_demo)

    lot = sub.add_parser(
        "lottery",
        help="iterative magnitude pruning with rewinding, and its controls",
        description="Train, prune a fraction alpha of the alive weights, rewind, repeat; then "
        "train the controls (random reinit, random masks, one-shot) at each density.",
    )
    lot.add_argument(
        "--dataset",
        choices=sorted(LOTTERY_DEFAULTS),
        default="teacher",
        help="teacher: sparse teacher network, no extra dependency (default); digits: scikit-learn's "
        "8x8 handwritten digits (extra 'experiments')",
    )
    lot.add_argument("--rule", choices=RULES, default="magnitude")
    lot.add_argument("--scope", choices=("layer", "global"), default="layer")
    lot.add_argument("--rounds", type=_integer(0), default=10, help="pruning rounds (>= 0)")
    lot.add_argument(
        "--alpha",
        type=_alpha,
        default=0.2,
        help="fraction of the alive weights pruned per round, in [0, 1)",
    )
    lot.add_argument(
        "--output-rate",
        type=_real(0.0),
        default=0.5,
        help="rate multiplier of the output layer, >= 0 (Frankle and Carbin prune "
        "it at half the rate)",
    )
    lot.add_argument("--rewind", type=_rewind, default="init", help="init | step:K | lr | finetune")
    lot.add_argument("--seed", type=_integer(0), default=0)
    lot.add_argument(
        "--epochs",
        type=_integer(1),
        default=None,
        help="epochs per round, >= 1 (default per dataset)",
    )
    lot.add_argument(
        "--lr",
        type=_real(0.0, low_open=True),
        default=None,
        help="learning rate, > 0 (default per dataset)",
    )
    lot.add_argument(
        "--batch-size",
        type=_integer(1),
        default=None,
        help="mini-batch size, >= 1 (default per dataset)",
    )
    lot.add_argument(
        "--momentum",
        type=_real(0.0, 1.0, high_open=True),
        default=None,
        help="SGD momentum in [0, 1) (default per dataset)",
    )
    lot.add_argument(
        "--no-controls", action="store_true", help="skip random reinit, random masks and one-shot"
    )
    lot.add_argument(
        "--weights",
        choices=("hex", "float", "none"),
        default="hex",
        help="how the trace stores the weights right after rewinding",
    )
    lot.add_argument(
        "--out", type=_output_path, default=None, help="write the trace as JSON to this path"
    )
    lot.add_argument(
        "--plot",
        type=_output_path,
        default=None,
        help="write a PNG of test accuracy against density (needs the 'experiments' extra)",
    )
    lot.set_defaults(func=lambda args: _lottery(args, lot))
    from .sweep.cli import add_commands

    add_commands(sub)
    args = parser.parse_args(argv)
    return cast(int, args.func(args))


if __name__ == "__main__":
    sys.exit(main())
