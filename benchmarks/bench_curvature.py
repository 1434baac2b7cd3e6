"""Cost of the Hessian diagonals relative to one gradient, 64-300-100-10 MLP, 1797 samples.

Cross-entropy, float64, the size of the handwritten-digits set (its images when
scikit-learn is installed, otherwise seeded uniform inputs of the same shape).
For ReLU and tanh, times in one run (medians of interleaved repeats):
the explicit gradient (``curvature.gradient``), the autograd gradient
(``model.loss_and_grads``), ``hessian_diag`` with "exact", "ggn", "obd", and
"hutchinson" (per probe), and prints exact / gradient. Targets: ReLU <= 4x,
tanh <= 20x. When torch and BackPACK are importable, BackPACK's DiagHessian
is timed on the same network and data in the same run, checked against
"exact", and its ratio printed; otherwise that part is skipped.

    python benchmarks/bench_curvature.py [--repeats 15] [--threads N]

``--threads`` sets the BLAS thread count (OPENBLAS/OMP/MKL_NUM_THREADS) before
NumPy is imported; on a loaded machine, one thread gives the steadier ratios.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

SIZES = (64, 300, 100, 10)
N_SAMPLES = 1797
PROBES = 4


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="BLAS threads (set before NumPy loads); default: the library's own",
    )
    return ap.parse_args()


def load_data(np):
    try:
        from refprune.data import load_digits

        X, y = load_digits()
        return X, y, "digits"
    except ImportError:
        from refprune.rng import make_rng

        rng = make_rng(0)
        X = rng.integers(0, 17, size=(N_SAMPLES, SIZES[0])) / 16.0
        y = rng.integers(0, SIZES[-1], N_SAMPLES)
        return X, y, "synthetic (digits shape; scikit-learn not installed)"


def backpack_timer(model, X, y, np):
    """(gradient fn, DiagHessian fn returning a dict like hessian_diag) or None if unavailable."""
    try:
        import torch
        from backpack import backpack, extend
        from backpack.extensions import DiagHessian
    except ImportError:
        return None
    acts = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid}
    layers = []
    for l in range(model.n_layers):
        lin = torch.nn.Linear(model.sizes[l], model.sizes[l + 1]).double()
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(model.params[f"layers.{l}.weight"]))
            lin.bias.copy_(torch.from_numpy(model.params[f"layers.{l}.bias"]))
        layers.append(lin)
        if l < model.n_layers - 1:
            layers.append(acts[model.activation]())
    net = extend(torch.nn.Sequential(*layers))
    lossfn = extend(torch.nn.CrossEntropyLoss(reduction="mean"))
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]

    def grad():
        net.zero_grad()
        lossfn(net(Xt), yt).backward()

    def diag_h():
        net.zero_grad()
        loss = lossfn(net(Xt), yt)
        with backpack(DiagHessian()):
            loss.backward()
        out = {}
        for l, lin in enumerate(linears):
            out[f"layers.{l}.weight"] = lin.weight.diag_h.detach().numpy().copy()
            out[f"layers.{l}.bias"] = lin.bias.diag_h.detach().numpy().copy()
        return out

    return grad, diag_h


def main() -> None:
    args = parse_args()
    if args.threads is not None:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    import numpy as np  # noqa: E402 - after the thread count is set

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _timing import interleaved_medians, machine_note  # noqa: E402

    from refprune import curvature as cv  # noqa: E402
    from refprune.mlp import MLP  # noqa: E402

    X, y, source = load_data(np)
    print(
        f"curvature benchmark: MLP {'-'.join(map(str, SIZES))}, cross-entropy, float64, "
        f"N={X.shape[0]} ({source}); threads={args.threads or 'default'}; {machine_note()}"
    )
    for activation, target in (("relu", 4.0), ("tanh", 20.0)):
        model = MLP(SIZES, activation, seed=0)
        fns = {
            "gradient": lambda: cv.gradient(model, X, y),
            "autograd": lambda: model.loss_and_grads(X, y),
            "exact": lambda: cv.hessian_diag(model, X, y, "exact"),
            "ggn": lambda: cv.hessian_diag(model, X, y, "ggn"),
            "obd": lambda: cv.hessian_diag(model, X, y, "obd"),
            "hutchinson": lambda: cv.hessian_diag(
                model, X, y, "hutchinson", n_samples=PROBES, seed=0
            ),
        }
        bp = backpack_timer(model, X, y, np)
        if bp is not None:
            import torch

            if args.threads is not None:
                torch.set_num_threads(args.threads)
            fns["torch gradient"], fns["backpack DiagHessian"] = bp
        t = interleaved_medians(fns, repeats=args.repeats, warmup=2)
        t["hutchinson"] /= PROBES
        base = t["gradient"]
        print(
            f"\n[{activation}] median ms over {args.repeats} interleaved repeats; {machine_note()}"
        )
        for name, sec in t.items():
            unit = " per probe" if name == "hutchinson" else ""
            print(f"  {name:22s} {sec * 1e3:8.2f} ms{unit:10s} {sec / base:6.2f}x gradient")
        ratio = t["exact"] / base
        print(
            f"  exact / gradient          = {ratio:.2f}  (target <= {target:g}: "
            f"{'met' if ratio <= target else 'NOT met'})"
        )
        print(f"  exact / autograd gradient = {t['exact'] / t['autograd']:.2f}")
        if bp is not None:
            ours = cv.hessian_diag(model, X, y, "exact")
            theirs = bp[1]()
            err = max(np.max(np.abs(ours[k] - theirs[k])) for k in ours) / max(
                np.max(np.abs(ours[k])) for k in ours
            )
            print(
                f"  backpack DiagHessian / torch gradient = "
                f"{t['backpack DiagHessian'] / t['torch gradient']:.2f}; "
                f"/ refprune gradient = {t['backpack DiagHessian'] / base:.2f}; "
                f"agreement max|diff|/max|diag| = {err:.1e}"
            )
        else:
            print("  BackPACK: skipped (torch and backpack-for-pytorch not importable)")
    print("\nTimings on a shared machine are provisional; re-measure on a quiet one.")


if __name__ == "__main__":
    main()
