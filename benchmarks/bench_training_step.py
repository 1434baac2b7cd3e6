"""One SGD step of a 64-300-100-10 ReLU MLP with cross-entropy at batch 128, float64.

Compares the refprune autograd engine with the same step written out by hand in
NumPy and, when torch is installed, with torch's CPU autograd. Prints medians of
interleaved repeats and the ratios measured in this run.

    python benchmarks/bench_training_step.py [--repeats 200]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved_medians, machine_note  # noqa: E402

from refprune.mlp import MLP  # noqa: E402
from refprune.train import SGD  # noqa: E402

SIZES = (64, 300, 100, 10)
BATCH = 128
LR = 0.01


def hand_written_step(params, X, y):
    W0, b0, W1, b1, W2, b2 = params
    z0 = X @ W0.T + b0
    a0 = np.maximum(z0, 0.0)
    z1 = a0 @ W1.T + b1
    a1 = np.maximum(z1, 0.0)
    z2 = a1 @ W2.T + b2
    shifted = z2 - z2.max(axis=1, keepdims=True)
    p = np.exp(shifted)
    p /= p.sum(axis=1, keepdims=True)
    n = X.shape[0]
    d2 = p
    d2[np.arange(n), y] -= 1.0
    d2 /= n
    gW2, gb2 = d2.T @ a1, d2.sum(0)
    d1 = (d2 @ W2) * (z1 > 0)
    gW1, gb1 = d1.T @ a0, d1.sum(0)
    d0 = (d1 @ W1) * (z0 > 0)
    gW0, gb0 = d0.T @ X, d0.sum(0)
    for w, g in zip(params, (gW0, gb0, gW1, gb1, gW2, gb2)):
        w -= LR * g


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((BATCH, SIZES[0]))
    y = rng.integers(0, SIZES[-1], BATCH)

    model = MLP(SIZES, "relu", seed=0)
    opt = SGD(LR)

    def engine_step():
        _, grads = model._loss_and_grads(X, y)
        opt.step(model, grads)

    hand = [p.copy() for p in MLP(SIZES, "relu", seed=0).params.values()]
    fns = {
        "refprune engine": engine_step,
        "hand-written NumPy": lambda: hand_written_step(hand, X, y),
    }
    # NumPy contenders first, before torch is imported: torch's OpenMP threads keep
    # spinning after each call and would steal the cores OpenBLAS is about to use.
    med = interleaved_medians(fns, repeats=args.repeats)

    try:
        import torch

        torch.set_default_dtype(torch.float64)
        tparams = [
            torch.tensor(p, requires_grad=True) for p in MLP(SIZES, "relu", seed=0).params.values()
        ]
        tX, ty = torch.tensor(X), torch.tensor(y)

        def torch_step():
            W0, b0, W1, b1, W2, b2 = tparams
            h = torch.relu(tX @ W0.T + b0)
            h = torch.relu(h @ W1.T + b1)
            loss = torch.nn.functional.cross_entropy(h @ W2.T + b2, ty)
            for p in tparams:
                p.grad = None
            loss.backward()
            with torch.no_grad():
                for p in tparams:
                    p -= LR * p.grad

        med["torch autograd (CPU)"] = interleaved_medians(
            {"torch": torch_step}, repeats=args.repeats
        )["torch"]
        torch_note = f"torch {torch.__version__}, {torch.get_num_threads()} threads, timed after the NumPy pair"
    except ImportError:
        torch_note = "torch not installed: column skipped"

    base = med["hand-written NumPy"]
    print(
        f"SGD step, MLP {'-'.join(map(str, SIZES))} ReLU, cross-entropy, batch {BATCH}, float64 "
        f"({machine_note()}; median of {args.repeats} interleaved repeats; {torch_note})"
    )
    for name, t in med.items():
        print(f"  {name:22s} {t * 1e6:9.1f} us   {t / base:5.2f}x hand-written")
    print(f"engine / hand-written = {med['refprune engine'] / base:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
