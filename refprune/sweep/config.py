"""A sweep's configuration: reading it, checking it once, expanding it into runs.

A sweep is a grid. Its axes (``GRID_AXES``) are lists; every combination is
one run: an IMP trace with its controls. Everything else is fixed for the whole
sweep. Each run is described by one canonical configuration (a JSON object with
every value that determines its result, seeds included) and named by the
SHA-256 of that object's canonical JSON text (``run_id``).

Seeds: grid seed s gives, for each run, the seeds ``derived_seeds(s)`` (the
same scheme as ``python -m refprune lottery --seed s``): data and split s,
initial weights s, mini-batch order s, scores s, random reinit s + 1, random
masks s + 2, membership split s + 3, random labels s + 4.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from ..activations import ACTIVATIONS
from ..curvature import METHODS as HESSIAN_METHODS
from ..lottery import CONTROLS, WEIGHT_FORMATS, Rewind
from ..masks import SCOPES
from ..scores import RULES

SWEEP_FORMAT = "refprune.sweep"
RUN_FORMAT = "refprune.sweep-run"
PLAN_FORMAT = "refprune.sweep-plan"
FORMAT_VERSION = 1

GRID_AXES = ("seeds", "datasets", "architectures", "rules", "scopes", "rewinds", "alphas")
TRAIN_KEYS = ("epochs", "lr", "batch_size", "momentum", "weight_decay")


class ConfigError(ValueError):
    """A sweep configuration that cannot be run; the message names the key."""


@dataclass(frozen=True)
class DatasetSpec:
    """A data set of the sweep: its parameters and defaults, its network and training defaults."""

    params: Mapping[str, Any]
    hidden: tuple[int, ...]
    train: Mapping[str, Any]
    needs: tuple[str, str] | None = None  # an optional package it needs: (name, module)


# The teacher and digits defaults are those of ``python -m refprune lottery``.
DATASETS: dict[str, DatasetSpec] = {
    # labels of a sparse random teacher MLP 20-32-4 (density 0.2) on Gaussian inputs
    "teacher": DatasetSpec(
        {
            "n_samples": 1500,
            "teacher_sizes": [20, 32, 4],
            "teacher_density": 0.2,
            "test_fraction": 0.25,
        },
        (48, 24),
        {"epochs": 8, "lr": 0.05, "batch_size": 32, "momentum": 0.9},
    ),
    # Gaussian blobs, balanced classes
    "blobs": DatasetSpec(
        {
            "n_samples": 1000,
            "n_features": 10,
            "n_classes": 4,
            "center_scale": 1.5,
            "spread": 1.0,
            "test_fraction": 0.25,
        },
        (32, 16),
        {"epochs": 10, "lr": 0.05, "batch_size": 32, "momentum": 0.9},
    ),
    # labels uniform over K, independent of the inputs (the no-free-lunch check)
    "random_labels": DatasetSpec(
        {
            "base": "gaussian",
            "n_samples": 1000,
            "n_features": 20,
            "n_classes": 4,
            "test_fraction": 0.5,
        },
        (48, 24),
        {"epochs": 8, "lr": 0.05, "batch_size": 32, "momentum": 0.9},
    ),
    # scikit-learn's 8x8 handwritten digits; LeNet-300-100 as in Frankle and Carbin (2019)
    "digits": DatasetSpec(
        {"test_fraction": 0.25},
        (300, 100),
        {"epochs": 20, "lr": 0.1, "batch_size": 64, "momentum": 0.9},
        needs=("scikit-learn", "sklearn"),
    ),
}
RANDOM_LABEL_BASES = ("gaussian", "digits")

# Keys of the TOML file besides the grid axes, with their defaults.
DEFAULTS: dict[str, Any] = {
    "rounds": 10,
    "controls": list(CONTROLS),
    "output_rate": 0.5,
    "activation": "relu",
    "hessian_method": "exact",
    "weights": "none",
    "membership": True,
    "membership_calibration": 0.5,
    "out": None,
    "train": {},
    "data": {},
}
AXIS_DEFAULTS: dict[str, list[Any]] = {
    "datasets": ["teacher"],
    "architectures": ["default"],
    "rules": ["magnitude"],
    "scopes": ["layer"],
    "rewinds": ["init"],
    "alphas": [0.2],
}


def derived_seeds(seed: int) -> dict[str, int]:
    """The seeds of a run from its grid seed s (module docstring)."""
    return {
        "data": seed,
        "split": seed,
        "init": seed,
        "order": seed,
        "score": seed,
        "reinit": seed + 1,
        "masks": seed + 2,
        "membership": seed + 3,
        "labels": seed + 4,
    }


def canonical_json(obj: Any) -> str:
    """Canonical JSON text: sorted keys, no spaces, ASCII, shortest round-trip floats, no NaN."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def run_id(config: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of a run's configuration."""
    return hashlib.sha256(canonical_json(config).encode("ascii")).hexdigest()


# ---------------------------------------------------------------- checks (each names its key)
def _int(v: Any, key: str, minimum: int = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{key} must be an integer, got {v!r}")
    if v < minimum:
        raise ConfigError(f"{key} must be >= {minimum}, got {v}")
    return v


def _float(
    v: Any, key: str, low: float, high: float, low_open: bool = False, high_open: bool = False
) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{key} must be a number, got {v!r}")
    v = float(v)
    bad = (
        not math.isfinite(v)
        or v < low
        or v > high
        or (low_open and v == low)
        or (high_open and v == high)
    )
    if bad:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise ConfigError(f"{key} must be in {left}{low}, {high}{right}, got {v}")
    return cast(float, v)


def _str(v: Any, key: str, options: Sequence[str] | None = None) -> str:
    if not isinstance(v, str):
        raise ConfigError(f"{key} must be a string, got {v!r}")
    if options is not None and v not in options:
        raise ConfigError(f"{key}: unknown value {v!r}; expected one of {', '.join(options)}")
    return v


def _list(v: Any, key: str) -> list[Any]:
    if not isinstance(v, list):
        raise ConfigError(f"{key} must be a list, got {v!r}")
    if not v:
        raise ConfigError(f"{key} must not be empty")
    return v


def _unique(values: list[Any], key: str) -> list[Any]:
    seen = []
    for x in values:
        if x in seen:
            raise ConfigError(f"{key} lists {x!r} twice")
        seen.append(x)
    return values


def _table(v: Any, key: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ConfigError(f"{key} must be a table, got {v!r}")
    return v


def _no_unknown(table: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    for k in table:
        if k not in allowed:
            prefix = f"{where}." if where else ""
            raise ConfigError(
                f"{prefix}{k}: unknown key; expected one of {', '.join(sorted(allowed))}"
            )


def _axis(doc: Mapping[str, Any], name: str, check: Callable[[Any, str], Any]) -> list[Any]:
    """A grid axis: a non-empty list, each entry checked as ``name[i]``, no entry twice."""
    return _unique([check(v, f"{name}[{i}]") for i, v in enumerate(_list(doc[name], name))], name)


def _rewind(v: Any, key: str) -> str:
    _str(v, key)
    try:
        return str(Rewind.parse(v))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _data_params(name: str, given: Mapping[str, Any]) -> dict[str, Any]:
    spec = DATASETS[name]
    where = f"data.{name}"
    _no_unknown(given, list(spec.params), where)
    p = {**spec.params, **given}
    out: dict[str, Any] = {}
    for k, v in p.items():
        key = f"{where}.{k}"
        if k in ("n_samples", "n_features", "n_classes"):
            out[k] = _int(v, key, minimum=2 if k == "n_classes" else 1)
        elif k in ("teacher_density", "center_scale", "spread"):
            out[k] = _float(v, key, 0.0, 1.0 if k == "teacher_density" else math.inf)
        elif k == "test_fraction":
            out[k] = _float(v, key, 0.0, 1.0, low_open=True, high_open=True)
        elif k == "teacher_sizes":
            sizes = _list(v, key)
            if len(sizes) < 2:
                raise ConfigError(f"{key} must list at least 2 widths, got {sizes}")
            out[k] = [_int(s, f"{key}[{i}]", minimum=1) for i, s in enumerate(sizes)]
        elif k == "base":
            out[k] = _str(v, key, RANDOM_LABEL_BASES)
    if name == "random_labels" and out["base"] == "digits":
        out["n_features"], out["n_classes"] = 64, 10
        out.pop("n_samples")
    return out


def _train(given: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    t = {"weight_decay": 0.0, **defaults, **given}
    return {
        "epochs": _int(t["epochs"], "train.epochs", minimum=1),
        "lr": _float(t["lr"], "train.lr", 0.0, math.inf, low_open=True),
        "batch_size": (
            None if t["batch_size"] in (None, 0) else _int(t["batch_size"], "train.batch_size", 1)
        ),
        "momentum": _float(t["momentum"], "train.momentum", 0.0, 1.0, high_open=True),
        "weight_decay": _float(t["weight_decay"], "train.weight_decay", 0.0, math.inf),
    }


def _io_sizes(name: str, params: Mapping[str, Any]) -> tuple[int, int]:
    """Input width and number of classes of a data set."""
    if name == "teacher":
        return params["teacher_sizes"][0], params["teacher_sizes"][-1]
    if name == "digits":
        return 64, 10
    return params["n_features"], params["n_classes"]


# ---------------------------------------------------------------- the configuration
@dataclass(frozen=True)
class SweepConfig:
    """A checked sweep: the grid axes and the settings shared by every run.

    Build it with ``SweepConfig.from_dict`` (a parsed TOML document) or
    ``load_config`` (a TOML file); ``expand`` lists its runs. ``to_dict``
    gives the normalised document back.
    """

    seeds: tuple[int, ...]
    datasets: tuple[str, ...]
    architectures: tuple[Any, ...]  # "default" or a tuple of hidden widths
    rules: tuple[str, ...]
    scopes: tuple[str, ...]
    rewinds: tuple[str, ...]
    alphas: tuple[float, ...]
    rounds: int
    controls: tuple[str, ...]
    output_rate: float
    activation: str
    hessian_method: str
    weights: str
    membership: bool
    membership_calibration: float
    train: Mapping[str, Any] = field(default_factory=dict)
    data: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    out: str | None = None

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> SweepConfig:
        """Check a parsed TOML document; raise ``ConfigError`` naming the first bad key."""
        if not isinstance(doc, Mapping):
            raise ConfigError(f"a sweep configuration must be a table, got {type(doc).__name__}")
        _no_unknown(doc, list(GRID_AXES) + list(DEFAULTS), "")
        if "seeds" not in doc:
            raise ConfigError("seeds: missing; a sweep needs a list of seeds, e.g. seeds = [0, 1]")
        d = {**DEFAULTS, **AXIS_DEFAULTS, **doc}
        seeds = _axis(d, "seeds", _int)
        datasets = _axis(d, "datasets", lambda v, key: _str(v, key, tuple(DATASETS)))
        archs: list[str | tuple[int, ...]] = []
        for i, a in enumerate(_list(d["architectures"], "architectures")):
            key = f"architectures[{i}]"
            if a == "default":
                archs.append("default")
            elif isinstance(a, list):
                archs.append(tuple(_int(w, f"{key}[{j}]", minimum=1) for j, w in enumerate(a)))
            else:
                raise ConfigError(
                    f'{key} must be "default" or a list of hidden widths such as '
                    f"[300, 100], got {a!r}"
                )
        _unique(archs, "architectures")
        rules = _axis(d, "rules", lambda v, key: _str(v, key, RULES))
        scopes = _axis(d, "scopes", lambda v, key: _str(v, key, SCOPES))
        rewinds = _axis(d, "rewinds", _rewind)
        alphas = _axis(d, "alphas", lambda v, key: _float(v, key, 0.0, 1.0, True, True))
        controls = d["controls"]
        if not isinstance(controls, list):
            raise ConfigError(f"controls must be a list, got {controls!r}")
        controls = _unique(
            [_str(v, f"controls[{i}]", CONTROLS) for i, v in enumerate(controls)], "controls"
        )
        train = _table(d["train"], "train")
        _no_unknown(train, TRAIN_KEYS, "train")
        data = _table(d["data"], "data")
        _no_unknown(data, list(DATASETS), "data")
        for name, table in data.items():
            _data_params(name, _table(table, f"data.{name}"))  # checked even if unused
        for name in datasets:
            _train(train, DATASETS[name].train)
        if not isinstance(d["membership"], bool):
            raise ConfigError(f"membership must be true or false, got {d['membership']!r}")
        out = d["out"]
        if out is not None and not isinstance(out, str):
            raise ConfigError(f"out must be a path string, got {out!r}")
        return cls(
            seeds=tuple(seeds),
            datasets=tuple(datasets),
            architectures=tuple(archs),
            rules=tuple(rules),
            scopes=tuple(scopes),
            rewinds=tuple(rewinds),
            alphas=tuple(alphas),
            rounds=_int(d["rounds"], "rounds", minimum=1),
            controls=tuple(controls),
            output_rate=_float(d["output_rate"], "output_rate", 0.0, 1.0),
            activation=_str(d["activation"], "activation", tuple(ACTIVATIONS)),
            hessian_method=_str(d["hessian_method"], "hessian_method", HESSIAN_METHODS),
            weights=_str(d["weights"], "weights", WEIGHT_FORMATS),
            membership=d["membership"],
            membership_calibration=_float(
                d["membership_calibration"], "membership_calibration", 0.0, 1.0, True, True
            ),
            train=dict(train),
            data={k: dict(v) for k, v in data.items()},
            out=out,
        )

    def to_dict(self) -> dict[str, Any]:
        """The normalised document (JSON-ready); ``from_dict(to_dict())`` gives the same config."""
        return {
            "seeds": list(self.seeds),
            "datasets": list(self.datasets),
            "architectures": [a if a == "default" else list(a) for a in self.architectures],
            "rules": list(self.rules),
            "scopes": list(self.scopes),
            "rewinds": list(self.rewinds),
            "alphas": list(self.alphas),
            "rounds": self.rounds,
            "controls": list(self.controls),
            "output_rate": self.output_rate,
            "activation": self.activation,
            "hessian_method": self.hessian_method,
            "weights": self.weights,
            "membership": self.membership,
            "membership_calibration": self.membership_calibration,
            "train": dict(self.train),
            "data": {k: dict(v) for k, v in self.data.items()},
            "out": self.out,
        }

    @property
    def size(self) -> int:
        """Number of runs: the product of the axis lengths."""
        return math.prod(len(getattr(self, a)) for a in GRID_AXES)


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: its id and canonical configuration (``run_config``)."""

    run_id: str
    config: Mapping[str, Any]

    def label(self) -> str:
        """A short human-readable name: data set, widths, rule, scope, rewind, alpha, seed."""
        c = self.config
        sizes = "-".join(str(s) for s in c["model"]["sizes"])
        return (
            f"{c['dataset']['name']} {sizes} {c['pruning']['rule']} {c['pruning']['scope']} "
            f"rewind {c['rewind']} alpha {c['pruning']['alpha']} seed {c['seed']}"
        )


def run_config(
    sweep: SweepConfig,
    *,
    seed: int,
    dataset: str,
    architecture: Any,
    rule: str,
    scope: str,
    rewind: str,
    alpha: float,
) -> dict[str, Any]:
    """The canonical configuration of one grid point: every value that determines its result."""
    from .. import __version__

    spec = DATASETS[dataset]
    params = _data_params(dataset, sweep.data.get(dataset, {}))
    d_in, k = _io_sizes(dataset, params)
    hidden = spec.hidden if architecture == "default" else architecture
    return {
        "format": RUN_FORMAT + "-config",
        "version": FORMAT_VERSION,
        "refprune": __version__,
        "dataset": {"name": dataset, **params},
        "model": {"sizes": [d_in, *hidden, k], "activation": sweep.activation, "init": "kaiming"},
        "train": _train(sweep.train, spec.train),
        "pruning": {
            "rule": rule,
            "scope": scope,
            "alpha": alpha,
            "rounds": sweep.rounds,
            "output_rate": sweep.output_rate,
            "hessian_method": sweep.hessian_method,
        },
        "rewind": rewind,
        "controls": list(sweep.controls),
        "seed": seed,
        "seeds": derived_seeds(seed),
        "membership": (
            {"calibration_fraction": sweep.membership_calibration} if sweep.membership else None
        ),
        "weights_format": sweep.weights,
    }


def expand(sweep: SweepConfig) -> list[RunSpec]:
    """Every run of the grid: seeds outermost (an interrupted sweep covers every setting of its
    first seeds), then data set, architecture, rule, scope, rewinding mode, alpha."""
    runs = []
    for seed in sweep.seeds:
        for dataset in sweep.datasets:
            for arch in sweep.architectures:
                for rule in sweep.rules:
                    for scope in sweep.scopes:
                        for rewind in sweep.rewinds:
                            for alpha in sweep.alphas:
                                cfg = run_config(
                                    sweep,
                                    seed=seed,
                                    dataset=dataset,
                                    architecture=arch,
                                    rule=rule,
                                    scope=scope,
                                    rewind=rewind,
                                    alpha=alpha,
                                )
                                runs.append(RunSpec(run_id(cfg), cfg))
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):  # e.g. "default" and the same widths written out
        raise ConfigError(
            "architectures: two entries give the same network for a data set "
            '("default" and its widths written out?)'
        )
    return runs


# ---------------------------------------------------------------- TOML
def _toml() -> Any:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise ConfigError(
                "reading a TOML file on Python 3.10 needs tomli: pip install 'refprune[sweep]'"
            ) from None
    return tomllib


def load_config(path: str | os.PathLike[str]) -> SweepConfig:
    """Read and check a TOML sweep file (``tomllib``; ``tomli`` on Python 3.10)."""
    tomllib = _toml()
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{os.fspath(path)} is not valid TOML: {exc}") from None
    return SweepConfig.from_dict(doc)


def as_config(config: SweepConfig | Mapping[str, Any] | str | os.PathLike[str]) -> SweepConfig:
    """A ``SweepConfig`` from itself, a parsed document, or the path of a TOML file."""
    if isinstance(config, SweepConfig):
        return config
    if isinstance(config, Mapping):
        return SweepConfig.from_dict(config)
    if isinstance(config, (str, os.PathLike)):
        return load_config(config)
    raise TypeError(
        f"config must be a SweepConfig, a mapping or a TOML path, got {type(config).__name__}"
    )
