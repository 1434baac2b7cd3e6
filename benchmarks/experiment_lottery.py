"""The lottery-ticket experiment on the handwritten digits (needs the ``experiments`` extra).

Question: with a 64-300-100-10 ReLU network, iterative magnitude pruning at
alpha = 0.2 per round (output layer at half the rate) and rewinding to the
initial weights, does the winning ticket keep its test accuracy within 1 point
of the dense network down to about 10% density, while the same masks on a
random re-initialisation fall lower? The script runs ``python -m refprune
lottery --dataset digits`` (winning ticket, random reinit, random masks and
one-shot at every density) for each seed, then answers from the traces, per
seed and averaged over the seeds (one seed's 449 test images make 1 point =
4.5 images, about the size of the noise).

Reproduce (about a minute per seed on 2 cores; single-threaded BLAS, which is
also far faster than a threaded BLAS on a busy machine):

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/experiment_lottery.py \
        --rounds 12 --seeds 0 1 2 --out lottery_digits.json --plot lottery_digits.png

Training per round (the CLI's digits defaults): 20 epochs of SGD, learning rate
0.1, momentum 0.9, batch 64, on 1348 training images (449 held out, split seed
= seed). Extra arguments are passed to the CLI (e.g. ``--epochs 30``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def analyse(trace: dict, tolerance: float = 0.01) -> dict:
    """Per round: density, winning ticket and control accuracies; the lowest density held within ``tolerance``."""
    rounds = trace["rounds"]
    dense = rounds[0]["test_accuracy"]
    rows, held = [], 0
    for r, rec in enumerate(rounds[1:], start=1):
        row = {"round": r, "density": rec["density"], "ticket": rec["test_accuracy"]}
        for c, recs in trace["controls"].items():
            row[c] = recs[r - 1]["test_accuracy"]
        rows.append(row)
        if held == r - 1 and dense - rec["test_accuracy"] <= tolerance:
            held = r  # every round so far within the tolerance
    return {"dense": dense, "rows": rows, "held_to_round": held}


def _run(seed: int, rounds: int, out: str, plot: str | None, extra: list[str]) -> dict:
    from refprune.__main__ import main as cli

    cli_args = [
        "lottery",
        "--dataset",
        "digits",
        "--rounds",
        str(rounds),
        "--alpha",
        "0.2",
        "--rewind",
        "init",
        "--seed",
        str(seed),
        "--weights",
        "none",
        "--out",
        out,
        *extra,
    ]
    if plot:
        cli_args += ["--plot", plot]
    print("\npython -m refprune " + " ".join(cli_args), flush=True)
    if cli(cli_args):
        raise SystemExit(2)
    with open(out, encoding="utf-8") as fh:
        return analyse(json.load(fh))


KINDS = ("ticket", "reinit", "random_masks", "one_shot")


def _table(title: str, dense: float, rows: list[dict]) -> None:
    print(f"\n{title}: dense test accuracy {dense:.4f}; (accuracy - dense) in points")
    print("round  density  ticket  reinit  rand.masks  one-shot")
    for row in rows:
        d = {k: 100 * (row[k] - dense) for k in KINDS}
        print(
            f"{row['round']:5d}  {row['density']:7.4f}  {d['ticket']:+6.2f}  {d['reinit']:+6.2f}  "
            f"{d['random_masks']:+10.2f}  {d['one_shot']:+8.2f}"
        )


def _verdict(result: dict) -> str:
    held = result["held_to_round"]
    if not held:
        return "the winning ticket lost more than 1 point already in round 1"
    rows = result["rows"][:held]
    below = sum(r["reinit"] < r["ticket"] for r in rows)
    return (
        f"winning ticket within 1 point of dense through round {held} (density {rows[-1]['density']:.4f}); "
        f"random reinit below the ticket in {below} of those {held} rounds"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--out",
        default=None,
        help="trace path; with several seeds '.seedN' is inserted (default: a temporary directory)",
    )
    parser.add_argument("--plot", default=None, help="PNG of the first seed")
    args, extra = parser.parse_known_args(argv)
    base = args.out or os.path.join(tempfile.mkdtemp(), "lottery_digits.json")
    results = []
    for i, seed in enumerate(args.seeds):
        root, ext = os.path.splitext(base)
        out = base if len(args.seeds) == 1 else f"{root}.seed{seed}{ext}"
        results.append(_run(seed, args.rounds, out, args.plot if i == 0 else None, extra))
    for seed, res in zip(args.seeds, results):
        _table(f"seed {seed}", res["dense"], res["rows"])
        print(_verdict(res))
    if len(results) > 1:
        n = len(results)
        dense = sum(r["dense"] for r in results) / n
        rows = [
            {
                "round": row["round"],
                "density": row["density"],
                **{k: sum(r["rows"][i][k] for r in results) / n for k in KINDS},
            }
            for i, row in enumerate(results[0]["rows"])
        ]
        held = 0
        for row in rows:
            if held == row["round"] - 1 and dense - row["ticket"] <= 0.01:
                held = row["round"]
        _table(f"mean over seeds {args.seeds}", dense, rows)
        print("mean: " + _verdict({"held_to_round": held, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
