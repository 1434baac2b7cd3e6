"""Command line: ``python -m refprune demo``."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    from .data import make_blobs, train_test_split
    from .mlp import MLP
    from .train import train

    X, y = make_blobs(600, n_features=2, n_classes=3, seed=args.seed)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, seed=args.seed)
    model = MLP([2, 32, 32, 3], "relu", seed=args.seed)
    hist = train(model, X_tr, y_tr, epochs=args.epochs, lr=0.05, batch_size=32, momentum=0.9,
                 seed=args.seed, X_test=X_te, y_test=y_te)
    print(f"MLP 2-32-32-3 on 3 Gaussian blobs (seed {args.seed}): "
          f"train accuracy {hist.accuracy[-1]:.3f}, test accuracy {hist.test_accuracy[-1]:.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="refprune", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train a small MLP on Gaussian blobs and print its accuracy")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--epochs", type=int, default=20)
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
