"""Merging a sweep's runs into one table, a summary and plots.

``report(out_dir)`` reads every run of the plan (each checked by
``RunStore.read_run``) and writes, under ``out_dir/report``:

* ``table.csv`` and ``table.json``: one row per trained network (run x
  kind x round; kind = "imp" or a control), with the run's settings, density,
  accuracies and losses, the correct test count, the membership advantage and
  the per-class test accuracies;
* ``summary.json``: per group of runs that differ only in rule and seed
  (data set, network, scope, alpha, rewinding mode), statistics over seeds
  (median and interquartile range; ``numpy.percentile``, linear interpolation):
  accuracy by round, the ticket against its controls below 10 % density
  (paired by seed), the classes that pay most, the membership advantage
  pruned against dense, and the no-free-lunch check on random labels;
* PNGs (extra ``sweep``, matplotlib): ``accuracy_<group>.png``,
  ``fairness_<group>.png``, ``membership_<group>.png`` and, for random
  labels, ``chance_<group>.png``.
"""

from __future__ import annotations

import csv
import json
import os
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..metrics import class_excess_drop
from .store import RunStore

KINDS = ("imp", "reinit", "random_masks", "one_shot")
KIND_LABELS = {
    "imp": "IMP (winning ticket)",
    "reinit": "random reinit",
    "random_masks": "random masks",
    "one_shot": "one-shot",
}
KIND_STYLES = {
    "imp": ("C0", "-"),
    "reinit": ("C1", "--"),
    "random_masks": ("C2", "--"),
    "one_shot": ("C3", ":"),
}
SPARSE = 0.10  # "below 10 % density", where the lottery-ticket papers look
GROUP_KEYS = ("dataset", "sizes", "scope", "alpha", "rewind")


# ---------------------------------------------------------------- the table
def rows_of_run(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per trained network of a run file: the IMP rounds (0 first), then each control's."""
    cfg, trace, metrics = doc["config"], doc["trace"], doc["metrics"]
    base = {
        "run_id": doc["run_id"],
        "dataset": cfg["dataset"]["name"],
        "sizes": "-".join(str(s) for s in cfg["model"]["sizes"]),
        "rule": cfg["pruning"]["rule"],
        "scope": cfg["pruning"]["scope"],
        "alpha": cfg["pruning"]["alpha"],
        "rewind": cfg["rewind"],
        "seed": cfg["seed"],
        "n_classes": cfg["model"]["sizes"][-1],
        "n_test": trace["config"]["n_test"],
    }
    rows = []
    for kind in ["imp", *cfg["controls"]]:
        records = trace["rounds"] if kind == "imp" else trace["controls"][kind]
        if len(records) != len(metrics[kind]):
            raise ValueError(
                f"run {doc['run_id']}: {kind} has {len(records)} records and "
                f"{len(metrics[kind])} measurements"
            )
        for rec, met in zip(records, metrics[kind]):
            mem = met.get("membership") or {}
            rows.append(
                {
                    **base,
                    "kind": kind,
                    "round": rec["round"],
                    "density": rec["density"],
                    "train_accuracy": rec["train_accuracy"],
                    "test_accuracy": rec["test_accuracy"],
                    "train_loss": rec["train_loss"],
                    "test_loss": rec["test_loss"],
                    "test_correct": met["test_correct"],
                    "generalization_gap": rec["train_accuracy"] - rec["test_accuracy"],
                    "membership_advantage": mem.get("advantage"),
                    "membership_tpr": mem.get("tpr"),
                    "membership_fpr": mem.get("fpr"),
                    "membership_threshold": mem.get("threshold"),
                    "per_class_test_accuracy": rec["per_class_test_accuracy"],
                }
            )
    return rows


def write_table(rows: list[dict[str, Any]], directory: Path) -> None:
    """``table.json`` (rows as objects) and ``table.csv`` (per-class accuracies: class_0, ...)."""
    text = json.dumps(rows, separators=(",", ":"), allow_nan=False)
    (directory / "table.json").write_text(text + "\n", encoding="utf-8")
    k = max((len(r["per_class_test_accuracy"] or []) for r in rows), default=0)
    fields = [f for f in (rows[0] if rows else {}) if f != "per_class_test_accuracy"]
    with open(directory / "table.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(fields + [f"class_{c}" for c in range(k)])
        for r in rows:
            pc = list(r["per_class_test_accuracy"] or [])
            pc += [None] * (k - len(pc))
            w.writerow([_cell(r[f]) for f in fields] + [_cell(v) for v in pc])


def _cell(v: Any) -> str:
    return "" if v is None else repr(v) if isinstance(v, float) else str(v)


# ---------------------------------------------------------------- statistics
def quartiles(values: Iterable[float]) -> dict[str, Any]:
    """Median and interquartile range (``numpy.percentile``, linear) of the values, and n."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return {"median": None, "q25": None, "q75": None, "n": 0}
    q25, med, q75 = np.percentile(v, [25, 50, 75])
    return {"median": float(med), "q25": float(q25), "q75": float(q75), "n": int(v.size)}


def _group_name(key: tuple[Any, ...]) -> str:
    dataset, sizes, scope, alpha, rewind = key
    return f"{dataset}_{sizes}_{scope}_alpha{alpha:g}_rewind-{rewind.replace(':', '')}"


def _index(rows: list[dict[str, Any]]) -> dict[Any, Any]:
    """group -> rule -> kind -> round -> seed -> row (a control's round 0 = the dense network)."""
    idx: dict[Any, Any] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    )
    for r in rows:
        idx[tuple(r[k] for k in GROUP_KEYS)][r["rule"]][r["kind"]][r["round"]][r["seed"]] = r
    for rules in idx.values():
        for kinds in rules.values():
            for kind, rounds in kinds.items():
                if kind != "imp":
                    rounds[0] = kinds["imp"][0]
    return idx


def _paired(a: dict[Any, Any], b: dict[Any, Any], field: str) -> dict[str, Any]:
    """Quartiles of a[seed][field] - b[seed][field] over the seeds in both; how often it is > 0."""
    seeds = sorted(set(a) & set(b))
    d = [
        a[s][field] - b[s][field]
        for s in seeds
        if a[s][field] is not None and b[s][field] is not None
    ]
    return {**quartiles(d), "positive": int(sum(x > 0 for x in d))}


def _sparse_rounds(imp: dict[Any, Any]) -> list[int]:
    return [r for r in sorted(imp) if r > 0 and _density(imp[r]) < SPARSE]


def _density(by_seed: dict[Any, Any]) -> float:
    return float(np.median([row["density"] for row in by_seed.values()]))


def summarise(rows: list[dict[str, Any]], confidence: float = 0.99) -> dict[str, Any]:
    """The statistics of ``summary.json`` (module docstring), per group of runs."""
    from ..theory import binomial_acceptance_interval

    out = {}
    for key, rules in sorted(_index(rows).items()):
        group: dict[str, Any] = dict(zip(GROUP_KEYS, key))
        group["rules"] = {rule: _rule_summary(kinds) for rule, kinds in sorted(rules.items())}
        if key[0] == "random_labels":
            group["chance"] = _chance(rules, confidence, binomial_acceptance_interval)
        out[_group_name(key)] = group
    return out


def _rule_summary(kinds: dict[Any, Any]) -> dict[str, Any]:
    """One rule of one group: per round, quartiles over seeds; the sparse rounds paired by seed."""
    imp = kinds["imp"]
    pruned = [r for r in sorted(imp) if r > 0]

    def per_kind(r: int, field: str) -> dict[str, Any]:
        return {
            f"{kind}_{field}": quartiles(x[field] for x in kinds[kind][r].values())
            for kind in kinds
            if r in kinds[kind]
        }

    return {
        "seeds": sorted(imp[0]),
        "rounds": [
            {
                "round": r,
                "density": _density(imp[r]),
                **per_kind(r, "test_accuracy"),
                **per_kind(r, "membership_advantage"),
            }
            for r in sorted(imp)
        ],
        "below_10_percent": [
            {
                "round": r,
                "density": _density(imp[r]),
                **{
                    f"imp_minus_{c}": _paired(imp[r], kinds[c][r], "test_accuracy")
                    for c in kinds
                    if c != "imp" and r in kinds[c]
                },
                "imp_minus_dense": _paired(imp[r], imp[0], "test_accuracy"),
            }
            for r in _sparse_rounds(imp)
        ],
        "fairness": [_fairness(imp, r) for r in pruned],
        "membership": [
            {
                "round": r,
                "density": _density(imp[r]),
                "imp_minus_dense": _paired(imp[r], imp[0], "membership_advantage"),
                "gap_imp_minus_dense": _paired(imp[r], imp[0], "generalization_gap"),
            }
            for r in pruned
        ],
    }


def _fairness(imp: dict[Any, Any], r: int) -> dict[str, Any]:
    """Per class, the excess drop (``class_excess_drop``) of round r against round 0, over seeds."""
    drops: dict[int, list[float]] = defaultdict(list)
    for seed, row in imp[r].items():
        dense = imp[0][seed]
        e = class_excess_drop(
            dense["per_class_test_accuracy"],
            row["per_class_test_accuracy"],
            dense["test_accuracy"],
            row["test_accuracy"],
        )
        for c, v in enumerate(e):
            if v is not None:
                drops[c].append(v)
    classes = [
        {"class": c, **quartiles(v), "pays_in_seeds": int(sum(x > 0 for x in v))}
        for c, v in sorted(drops.items())
    ]
    worst = sorted(classes, key=lambda c: (-c["median"], c["class"]))[:3]
    return {
        "round": r,
        "density": _density(imp[r]),
        "classes": classes,
        "pays_most": [c["class"] for c in worst],
    }


def _chance(
    rules: dict[Any, Any], confidence: float, interval: Callable[..., Any]
) -> dict[str, Any]:
    """No free lunch: is every test accuracy within the binomial acceptance interval of 1/K?

    Every row of a group has the same K and test set (one data set), hence one interval.
    """
    rows = [
        row
        for kinds in rules.values()
        for kind, rounds in kinds.items()
        for r, by_seed in rounds.items()
        if kind == "imp" or r > 0  # dense counted once
        for row in by_seed.values()
    ]
    k, m = rows[0]["n_classes"], rows[0]["n_test"]
    lo, hi = interval(1.0 / k, m, confidence)
    outside = [row for row in rows if not lo <= row["test_correct"] <= hi]
    first = outside[0] if outside else None
    return {
        "confidence": confidence,
        "checks": len(rows),
        "outside": len(outside),
        "expected_outside_at_most": (1 - confidence) * len(rows),
        "chance": 1.0 / k,
        "interval_correct": [int(lo), int(hi)],
        "n_test": m,
        "first_outside": None
        if first is None
        else {f: first[f] for f in ("run_id", "kind", "round", "test_correct")},
    }


def digest(summary: dict[str, Any]) -> list[str]:
    """The summary in a few lines per group and rule: the ticket against its controls below
    10 % density, the classes that pay most at the lowest density, the membership advantage
    pruned minus dense, and the chance check (medians over seeds; differences x 100)."""
    lines = []
    for name, group in summary["groups"].items():
        lines.append(name)
        for rule, s in group["rules"].items():
            lines.append(f"  {rule}:")
            for b in s["below_10_percent"]:
                parts = [f"{k[10:]} {_pts(v)}" for k, v in b.items() if k.startswith("imp_minus_")]
                lines.append(f"    density {b['density']:.3f}: ticket minus " + ", ".join(parts))
            if s["fairness"]:
                f = s["fairness"][-1]
                worst = [c for c in f["classes"] if c["class"] in f["pays_most"]]
                worst.sort(key=lambda c: f["pays_most"].index(c["class"]))
                lines.append(
                    f"    density {f['density']:.3f}: classes paying most "
                    + ", ".join(
                        f"{c['class']} ({100 * c['median']:+.1f} points, {c['pays_in_seeds']}/{c['n']} "
                        "seeds)"
                        for c in worst
                    )
                )
            if s["membership"]:
                mem = s["membership"][-1]
                lines.append(
                    f"    density {mem['density']:.3f}: membership advantage pruned minus "
                    f"dense {_pts(mem['imp_minus_dense'])}"
                )
        if "chance" in group:
            ch = group["chance"]
            lines.append(
                f"  chance: {ch['outside']} of {ch['checks']} test accuracies outside "
                f"the {ch['confidence']:.0%} binomial interval around 1/K = "
                f"{ch['chance']:.3f}"
            )
    return lines


def _pts(q: dict[str, Any]) -> str:
    """A paired difference in points: median [q25, q75], positive in k of n seeds."""
    if q["median"] is None:
        return "n/a"
    return (
        f"{100 * q['median']:+.2f} [{100 * q['q25']:+.2f}, {100 * q['q75']:+.2f}] "
        f"({q['positive']}/{q['n']} seeds > 0)"
    )


# ---------------------------------------------------------------- plots
def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            "the report's plots need matplotlib: pip install 'refprune[sweep]'"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(plt: Any, n: int, title: str) -> tuple[Any, Any]:
    cols = 1 if n == 1 else 2
    nrows = -(-n // cols)
    fig, axes = plt.subplots(
        nrows,
        cols,
        figsize=(4.6 * cols, 3.3 * nrows + 0.4),
        squeeze=False,
        sharey=True,
        layout="constrained",
    )
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=9)
    return fig, axes.ravel()


def _curve_axes(ax: Any, ylabel: str, rule: str) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_title(rule, fontsize=9)
    ax.set_xlabel("density (fraction of weights left)", fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, which="both", alpha=0.3)


def plot_curves(plt: Any, group: dict[str, Any], field: str, ylabel: str, path: Path) -> None:
    """Per rule: IMP median with its interquartile band over seeds; controls' medians dashed."""
    rules = group["rules"]
    fig, axes = _grid(plt, len(rules), _title(group))
    for ax, (rule, s) in zip(axes, rules.items()):
        for kind in KINDS:
            pts = [
                (r["density"], r[f"{kind}_{field}"])
                for r in s["rounds"]
                if f"{kind}_{field}" in r and r[f"{kind}_{field}"]["median"] is not None
            ]
            if not pts:
                continue
            x = [p[0] for p in pts]
            color, ls = KIND_STYLES[kind]
            ax.plot(
                x,
                [p[1]["median"] for p in pts],
                ls,
                color=color,
                marker="o",
                ms=2.5,
                lw=1.3,
                label=KIND_LABELS[kind],
            )
            if kind == "imp":
                ax.fill_between(
                    x,
                    [p[1]["q25"] for p in pts],
                    [p[1]["q75"] for p in pts],
                    color=color,
                    alpha=0.25,
                    lw=0,
                )
        _curve_axes(ax, ylabel, rule)
    axes[0].legend(fontsize=7)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_fairness(plt: Any, group: dict[str, Any], path: Path) -> None:
    """Per rule: median excess drop of each class (rows) at each density (columns), in points."""
    rules = group["rules"]
    fig, axes = _grid(
        plt,
        len(rules),
        _title(group) + "\nclass accuracy drop minus the overall "
        "drop (points, median over seeds; red = the class pays more)",
    )
    vmax = (
        max(
            (abs(c["median"]) for s in rules.values() for f in s["fairness"] for c in f["classes"]),
            default=0.0,
        )
        * 100
        or 1.0
    )
    for ax, (rule, s) in zip(axes, rules.items()):
        if not s["fairness"]:
            continue
        k = len(s["fairness"][0]["classes"])
        grid = np.array([[c["median"] * 100 for c in f["classes"]] for f in s["fairness"]]).T
        im = ax.imshow(grid, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
        ax.set_xticks(range(len(s["fairness"])))
        ax.set_xticklabels([f"{f['density']:.2g}" for f in s["fairness"]], rotation=90, fontsize=6)
        ax.set_yticks(range(k))
        ax.set_yticklabels([str(c) for c in range(k)], fontsize=6)
        ax.set_xlabel("density", fontsize=8)
        ax.set_ylabel("class", fontsize=8)
        ax.set_title(rule, fontsize=9)
    fig.colorbar(im, ax=list(axes[: len(rules)]), shrink=0.8)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_chance(plt: Any, group: dict[str, Any], rows: list[dict[str, Any]], path: Path) -> None:
    """Random labels: every test accuracy against density, 1/K and its binomial acceptance band."""
    ch = group["chance"]
    fig, ax = plt.subplots(figsize=(6, 3.6), layout="constrained")
    for kind in KINDS:
        pts = [(r["density"], r["test_accuracy"]) for r in rows if r["kind"] == kind]
        if pts:
            color, _ = KIND_STYLES[kind]
            ax.scatter(*zip(*pts), s=8, color=color, label=KIND_LABELS[kind], alpha=0.7)
    lo, hi = ch["interval_correct"]
    ax.axhspan(
        lo / ch["n_test"],
        hi / ch["n_test"],
        color="0.85",
        zorder=0,
        label=f"{ch['confidence']:.0%} binomial interval",
    )
    ax.axhline(ch["chance"], color="k", lw=0.8, label="1/K")
    _curve_axes(ax, "test accuracy", "")
    ax.set_title(
        _title(group) + f"\n{ch['outside']} of {ch['checks']} accuracies outside the interval",
        fontsize=9,
    )  # after _curve_axes, which sets one
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _title(group: dict[str, Any]) -> str:
    return (
        f"{group['dataset']}, MLP {group['sizes']}, {group['scope']} scope, "
        f"alpha {group['alpha']:g}, rewind {group['rewind']}"
    )


# ---------------------------------------------------------------- the command
def report(
    out_dir: str | os.PathLike[str],
    report_dir: str | os.PathLike[str] | None = None,
    *,
    confidence: float = 0.99,
    plots: bool = True,
) -> dict[str, Any]:
    """Merge a sweep's runs into ``table.csv``, ``table.json``, ``summary.json`` and PNGs.

    Reads the plan (``sweep.json``) and every finished run (each checked;
    a damaged file raises ``StoreError``). Returns the summary, with
    ``runs`` (planned, finished, failed, missing) and ``files`` (written).
    """
    store = RunStore(out_dir)
    plan = store.read_plan()
    failures = store.failures()
    docs = [store.read_run(rid) for rid in plan["runs"] if (store.runs / f"{rid}.json").exists()]
    if not docs:
        raise ValueError(f"{store.root}: no finished run to report")
    rows = [row for doc in docs for row in rows_of_run(doc)]
    target = Path(report_dir) if report_dir is not None else store.root / "report"
    target.mkdir(parents=True, exist_ok=True)
    write_table(rows, target)
    groups = summarise(rows, confidence)
    done = {d["run_id"] for d in docs}
    failed = sorted(r for r in failures if r not in done)
    missing = len([r for r in plan["runs"] if r not in done and r not in failures])
    summary: dict[str, Any] = {
        "runs": {
            "planned": len(plan["runs"]),
            "finished": len(docs),
            "failed": failed,
            "missing": missing,
        },
        "sparse_density_threshold": SPARSE,
        "groups": groups,
        "files": ["table.csv", "table.json"],
    }
    if plots:
        plt = _pyplot()
        for name, group in groups.items():
            for stem, field, ylabel in (
                ("accuracy", "test_accuracy", "test accuracy"),
                ("membership", "membership_advantage", "membership advantage (TPR - FPR)"),
            ):
                plot_curves(plt, group, field, ylabel, target / f"{stem}_{name}.png")
                summary["files"].append(f"{stem}_{name}.png")
            plot_fairness(plt, group, target / f"fairness_{name}.png")
            summary["files"].append(f"fairness_{name}.png")
            if "chance" in group:
                grows = [r for r in rows if _group_name(tuple(r[k] for k in GROUP_KEYS)) == name]
                plot_chance(plt, group, grows, target / f"chance_{name}.png")
                summary["files"].append(f"chance_{name}.png")
    summary["files"].append("summary.json")
    (target / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    summary["report_dir"] = str(target)
    return summary
