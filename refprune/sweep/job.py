"""One run of a sweep: data, network, IMP with its controls, and the measurements beside the trace.

``execute(config)`` is a pure function of the run's canonical configuration:
the same configuration gives the same bytes. The executors never call it in
their own process: each run is a fresh interpreter,

    python -m refprune.sweep.job  < {"run_id": ..., "config": {...}}

with one BLAS thread (``JOB_ENV``), which writes ``{"file": <the run file's
text>, "compute_seconds": ...}`` to its standard output. So a run that crashes
or is killed takes only its own process down, and the bits of a result do not
depend on which executor, worker or thread count ran it.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from .config import FORMAT_VERSION, RUN_FORMAT, canonical_json, run_id

# The environment of a run's process, on top of the worker's: one thread for every BLAS (the
# bits of a matrix product depend on OpenBLAS's thread count), as Dask's nanny also sets.
JOB_ENV = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONHASHSEED": "0",
}
PARENT_ENV = "REFPRUNE_SWEEP_PARENT"


def load_data(
    dataset: Mapping[str, Any], seeds: Mapping[str, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train and test arrays of a run's data set: X_train, X_test, y_train, y_test.

    teacher: ``make_teacher_student(n_samples, teacher_sizes, density=teacher_density,
    seed=seeds["data"])``; blobs: ``make_blobs(..., seed=seeds["data"])``;
    random_labels: inputs x ~ N(0, I) (``make_rng(seeds["data"]).standard_normal``)
    or the digits images, labels ``random_labels(..., seed=seeds["labels"])``;
    digits: ``load_digits()``. Then ``train_test_split(test_fraction, seed=seeds["split"])``.
    """
    from ..data import (
        load_digits,
        make_blobs,
        make_teacher_student,
        random_labels,
        train_test_split,
    )
    from ..rng import make_rng

    name = dataset["name"]
    if name == "teacher":
        X, y, _ = make_teacher_student(
            dataset["n_samples"],
            tuple(dataset["teacher_sizes"]),
            density=dataset["teacher_density"],
            seed=seeds["data"],
        )
    elif name == "blobs":
        X, y = make_blobs(
            dataset["n_samples"],
            dataset["n_features"],
            dataset["n_classes"],
            center_scale=dataset["center_scale"],
            spread=dataset["spread"],
            seed=seeds["data"],
        )
    elif name == "random_labels":
        if dataset["base"] == "digits":
            X, _ = load_digits()
        else:
            shape = (dataset["n_samples"], dataset["n_features"])
            X = make_rng(seeds["data"]).standard_normal(shape)
        y = random_labels(np.zeros(X.shape[0]), dataset["n_classes"], seed=seeds["labels"])
    elif name == "digits":
        X, y = load_digits()
    else:
        raise ValueError(f"unknown data set {name!r}")
    return train_test_split(X, y, test_fraction=dataset["test_fraction"], seed=seeds["split"])


def _call_run_imp(
    model: Any,
    X: np.ndarray,
    y: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    config: Mapping[str, Any],
    observe: Any,
) -> Any:
    """The one call into ``refprune.lottery.run_imp`` (a change of its signature is edited here)."""
    from ..lottery import TrainConfig, run_imp

    p, t, s = config["pruning"], config["train"], config["seeds"]
    last = f"layers.{len(config['model']['sizes']) - 2}.weight"
    return run_imp(
        model,
        X,
        y,
        X_test=X_test,
        y_test=y_test,
        rounds=p["rounds"],
        alpha=p["alpha"],
        rule=p["rule"],
        scope=p["scope"],
        rate_multipliers=None if p["output_rate"] == 1.0 else {last: p["output_rate"]},
        rewind=config["rewind"],
        hessian_method=p["hessian_method"],
        train_config=TrainConfig(
            epochs=t["epochs"],
            lr=t["lr"],
            batch_size=t["batch_size"],
            momentum=t["momentum"],
            weight_decay=t["weight_decay"],
            seed=s["order"],
        ),
        score_seed=s["score"],
        controls=tuple(config["controls"]),
        reinit_seed=s["reinit"],
        mask_seed=s["masks"],
        weights_format=config["weights_format"],
        observe=observe,
    )


def execute(config: Mapping[str, Any]) -> str:
    """Run one configuration; return the text of its run file (JSON, one line, newline-terminated).

    The file holds ``format``, ``version``, ``run_id``, ``config``, the IMP
    ``trace`` (``refprune.lottery``), ``metrics`` (per record of the trace, in
    the same order: ``test_correct``, the number of correct test predictions,
    and ``membership``, ``refprune.metrics.membership_advantage`` of the trained
    network, training rows as members and test rows as non-members, the same
    split for every record) and ``result_sha256``, the SHA-256 of the canonical
    JSON of ``{"trace": ..., "metrics": ...}``.
    """
    from ..metrics import membership_advantage, per_example_loss
    from ..mlp import MLP

    X_tr, X_te, y_tr, y_te = load_data(config["dataset"], config["seeds"])
    m = config["model"]
    model = MLP(m["sizes"], m["activation"], init=m["init"], seed=config["seeds"]["init"])
    member = config["membership"]
    metrics: dict[str, list[Any]] = {"imp": [], **{c: [] for c in config["controls"]}}

    def observe(kind: str, index: int, net: MLP) -> None:
        rec: dict[str, Any] = {
            "round": index,
            "test_correct": int(np.count_nonzero(net.predict(X_te) == y_te)),
        }
        if member is not None:
            rec["membership"] = membership_advantage(
                per_example_loss(net, X_tr, y_tr),
                per_example_loss(net, X_te, y_te),
                calibration_fraction=member["calibration_fraction"],
                seed=config["seeds"]["membership"],
            ).to_dict()
        metrics[kind].append(rec)

    res = _call_run_imp(model, X_tr, y_tr, X_te, y_te, config, observe)
    result = {"trace": res.trace, "metrics": metrics}
    doc = {
        "format": RUN_FORMAT,
        "version": FORMAT_VERSION,
        "run_id": run_id(config),
        "config": config,
        **result,
        "result_sha256": result_sha256(result),
    }
    return json.dumps(doc, separators=(",", ":"), allow_nan=False) + "\n"


def result_sha256(result: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a run's ``{"trace": ..., "metrics": ...}``."""
    import hashlib

    return hashlib.sha256(canonical_json(result).encode("ascii")).hexdigest()


def exit_with_parent() -> None:
    """End this process (status 3) when the worker that started it is gone, checked every 0.2 s.

    The worker's pid comes in ``REFPRUNE_SWEEP_PARENT`` (set by the worker:
    a worker killed while this process was starting is already gone when this
    runs). A run command must do this: when a sweep is interrupted its workers
    are killed, and a run left behind would compute for nothing.
    """
    parent = int(os.environ.get(PARENT_ENV) or os.getppid())

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(3)
            time.sleep(0.2)

    if os.getppid() != parent:
        os._exit(3)
    threading.Thread(target=watch, daemon=True).start()


def handle(request: Mapping[str, Any]) -> str:
    """Answer a request ``{"run_id", "config"}`` with the JSON ``{"file", "compute_seconds"}``."""
    config = request["config"]
    if run_id(config) != request["run_id"]:
        raise ValueError(f"run id {request['run_id']} is not the SHA-256 of its configuration")
    t0 = time.perf_counter()
    text = execute(config)
    return json.dumps({"file": text, "compute_seconds": time.perf_counter() - t0})


def main() -> int:
    """Read a request from stdin, write the answer (``handle``) to stdout; end with the parent."""
    exit_with_parent()
    sys.stdout.write(handle(json.loads(sys.stdin.read())))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
