"""Sweeps: the grid, run ids, resuming, failures, executors, the report and the command line."""

import concurrent.futures as cf
import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from refprune import sweep
from refprune.__main__ import main as cli
from refprune.sweep.config import ConfigError, canonical_json
from refprune.sweep.store import StoreError

HELPERS = Path(__file__).with_name("sweep_helpers")
# The tiny sweep of the tests: 2 seeds x 2 rules x 2 rounds on the sparse teacher, small and fast.
TINY = {
    "seeds": [0, 1],
    "rules": ["magnitude", "random"],
    "rounds": 2,
    "controls": ["reinit", "random_masks"],
    "train": {"epochs": 2},
    "data": {"teacher": {"n_samples": 200}},
}
TINY_TOML = """seeds = [0, 1]
rules = ["magnitude", "random"]
rounds = 2
controls = ["reinit", "random_masks"]

[train]
epochs = 2

[data.teacher]
n_samples = 200
"""


def files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "runs").glob("*.json"))}


def logging_job(log: Path, crash: str | None = None) -> list[str]:
    return [sys.executable, str(HELPERS / "logging_job.py"), str(log)] + ([crash] if crash else [])


def log_lines(log: Path) -> list[tuple[str, str]]:
    return [tuple(line.split()) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The tiny sweep run once on the default process pool: its output directory."""
    out = tmp_path_factory.mktemp("reference")
    summary = sweep.run(TINY, out, workers=2)
    assert (summary.total, summary.completed, summary.failed) == (4, 4, {})
    return out


# ---------------------------------------------------------------- configuration and ids
def test_grid_expands_seeds_outermost_with_one_id_per_canonical_config():
    cfg = sweep.SweepConfig.from_dict({**TINY, "rewinds": ["init", "step:3"], "alphas": [0.2, 0.5]})
    runs = sweep.expand(cfg)
    assert len(runs) == cfg.size == 2 * 2 * 2 * 2
    assert [r.config["seed"] for r in runs] == [0] * 8 + [1] * 8
    for r in runs:
        text = canonical_json(r.config)
        assert r.run_id == hashlib.sha256(text.encode()).hexdigest()
        assert r.config["seeds"] == sweep.derived_seeds(r.config["seed"])
    assert len({r.run_id for r in runs}) == 16


def test_run_id_ignores_key_order_and_spelling_of_defaults():
    a = sweep.expand(sweep.SweepConfig.from_dict(TINY))
    b = sweep.expand(
        sweep.SweepConfig.from_dict(
            {**dict(reversed(list(TINY.items()))), "architectures": [[48, 24]], "alphas": [0.2]}
        )
    )
    assert [r.run_id for r in a] == [r.run_id for r in b]  # "default" = (48, 24) on the teacher


def test_config_round_trips_through_to_dict():
    cfg = sweep.SweepConfig.from_dict({**TINY, "architectures": ["default", [8]]})
    assert sweep.SweepConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "doc, match",
    [
        ({}, "seeds: missing"),
        ({"seeds": [0], "rule": ["magnitude"]}, "rule: unknown key"),
        ({"seeds": [0, 0]}, "seeds lists 0 twice"),
        ({"seeds": [-1]}, r"seeds\[0\] must be >= 0"),
        ({"seeds": "0"}, "seeds must be a list"),
        ({"seeds": [0], "rules": ["biggest"]}, r"rules\[0\]: unknown value 'biggest'"),
        ({"seeds": [0], "rewinds": ["step:x"]}, r"rewinds\[0\]: rewind must be 'step:K'"),
        ({"seeds": [0], "alphas": [1.0]}, r"alphas\[0\] must be in \(0.0, 1.0\)"),
        ({"seeds": [0], "architectures": [[0]]}, r"architectures\[0\]\[0\] must be >= 1"),
        ({"seeds": [0], "architectures": ["big"]}, r"architectures\[0\] must be \"default\""),
        ({"seeds": [0], "train": {"epoch": 2}}, "train.epoch: unknown key"),
        ({"seeds": [0], "train": {"lr": 0}}, r"train.lr must be in \(0.0, inf\]"),
        ({"seeds": [0], "data": {"mnist": {}}}, "data.mnist: unknown key"),
        (
            {"seeds": [0], "data": {"teacher": {"n_sample": 5}}},
            "data.teacher.n_sample: unknown key",
        ),
        (
            {"seeds": [0], "data": {"random_labels": {"base": "cifar"}}},
            "data.random_labels.base: unknown value",
        ),
        ({"seeds": [0], "membership": 1}, "membership must be true or false"),
        ({"seeds": [0], "controls": ["shuffle"]}, r"controls\[0\]: unknown value 'shuffle'"),
        (
            {"seeds": [0], "architectures": ["default", [48, 24]]},
            "two entries give the same network",
        ),
    ],
)
def test_bad_config_names_the_key(doc, match):
    with pytest.raises(ConfigError, match=match):
        sweep.expand(sweep.SweepConfig.from_dict(doc))


# ---------------------------------------------------------------- executors give the same bytes
def test_same_bytes_on_any_concurrent_futures_executor(reference, tmp_path):
    with cf.ThreadPoolExecutor(2) as pool:
        summary = sweep.run(TINY, tmp_path, executor=pool)
    assert (summary.completed, summary.failed) == (4, {})
    assert files(tmp_path) == files(reference) and len(files(reference)) == 4


def test_same_bytes_on_a_dask_local_cluster(reference, tmp_path, capsys):
    pytest.importorskip("distributed", reason="the Dask executor needs the 'sweep' extra")
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY_TOML)
    out = tmp_path / "o"
    assert cli(["sweep", str(cfg), "--quiet", "--dask-local", "2", "--out", str(out)]) == 0
    assert "on a LocalCluster of 2 workers" in capsys.readouterr().err
    assert files(out) == files(reference)


def test_run_file_holds_the_trace_and_its_measurements(reference):
    doc = json.loads(next((reference / "runs").glob("*.json")).read_text())
    assert doc["format"] == "refprune.sweep-run" and len(doc["trace"]["rounds"]) == 3
    for kind, records in [("imp", doc["trace"]["rounds"])] + list(doc["trace"]["controls"].items()):
        mets = doc["metrics"][kind]
        assert [m["round"] for m in mets] == [r["round"] for r in records]
        for m, r in zip(mets, records):
            assert m["test_correct"] == round(r["test_accuracy"] * doc["trace"]["config"]["n_test"])
            assert -1 <= m["membership"]["advantage"] <= 1
            assert m["membership"]["calibration_advantage"] >= 0


# ---------------------------------------------------------------- resuming and failures
def test_rerun_skips_finished_runs_and_runs_nothing(reference, tmp_path):
    log = tmp_path / "log"
    before = {p: p.stat().st_mtime_ns for p in (reference / "runs").glob("*.json")}
    summary = sweep.run(TINY, reference, job_command=logging_job(log))
    assert (summary.skipped, summary.completed) == (4, 0) and not log.exists()
    assert {p: p.stat().st_mtime_ns for p in (reference / "runs").glob("*.json")} == before


def test_a_run_that_dies_is_retried_once_then_reported_while_the_others_finish(reference, tmp_path):
    log = tmp_path / "log"
    summary = sweep.run(TINY, tmp_path / "out", workers=2, job_command=logging_job(log, "1:random"))
    plan = sweep.expand(sweep.SweepConfig.from_dict(TINY))
    dead = next(
        r.run_id for r in plan if r.config["seed"] == 1 and r.config["pruning"]["rule"] == "random"
    )
    assert list(summary.failed) == [dead] and summary.completed == 3
    assert "exit status 7" in summary.failed[dead]
    starts = [rid for what, rid in log_lines(log) if what == "start"]
    assert starts.count(dead) == 2
    assert all(starts.count(r.run_id) == 1 for r in plan if r.run_id != dead)
    failure = json.loads((tmp_path / "out" / "failed" / f"{dead}.json").read_text())
    assert failure["attempts"] == 2 and "seed 1" in failure["run"]
    ref = files(reference)
    assert files(tmp_path / "out") == {k: v for k, v in ref.items() if k != f"{dead}.json"}
    # the next sweep runs only the failed run, and clears its failure record
    again = sweep.run(TINY, tmp_path / "out", job_command=logging_job(log))
    assert (again.skipped, again.completed, again.failed) == (3, 1, {})
    assert files(tmp_path / "out") == ref
    assert not (tmp_path / "out" / "failed" / f"{dead}.json").exists()


def test_a_killed_pool_worker_costs_only_the_run_that_kills_it(reference, tmp_path):
    log = tmp_path / "log"
    summary = sweep.run(
        TINY, tmp_path / "out", workers=2, job_command=logging_job(log, "kill-worker:0:random")
    )
    plan = sweep.expand(sweep.SweepConfig.from_dict(TINY))
    killer = next(
        r.run_id for r in plan if r.config["seed"] == 0 and r.config["pruning"]["rule"] == "random"
    )
    assert list(summary.failed) == [killer] and "BrokenProcessPool" in summary.failed[killer]
    assert summary.completed == 3
    assert files(tmp_path / "out") == {
        k: v for k, v in files(reference).items() if k != f"{killer}.json"
    }
    assert [rid for what, rid in log_lines(log) if what == "start"].count(killer) == 2


def test_sigint_stops_the_sweep_and_a_rerun_finishes_it_running_nothing_twice(reference, tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY_TOML)
    out, log = tmp_path / "out", tmp_path / "log"
    cmd = [sys.executable, str(HELPERS / "driver.py"), str(cfg), str(out), str(log), "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list((out / "runs").glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    first = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (out / "runs").glob("*.json")}
    assert 1 <= len(first) < 4
    assert not [p for p in out.rglob("*.tmp")]
    time.sleep(0.5)  # a run's process ends within 0.2 s of its worker
    n_lines = len(log_lines(log))
    time.sleep(0.5)
    assert len(log_lines(log)) == n_lines  # nothing left running by the interrupted sweep
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert f"skipped {len(first)} completed {4 - len(first)} failed 0" in rerun.stdout
    started = [rid for what, rid in log_lines(log)[n_lines:] if what == "start"]
    assert sorted(started) == sorted(name[:-5] for name in files(reference) if name not in first)
    assert {
        p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in (out / "runs").glob("*.json")
        if p.name in first
    } == first  # finished runs are not run again
    assert files(out) == files(reference)  # nothing lost


def test_a_damaged_run_file_stops_the_sweep_and_the_report(reference, tmp_path):
    out = tmp_path / "out"
    (out / "runs").mkdir(parents=True)
    for name, data in files(reference).items():
        (out / "runs" / name).write_bytes(data)
    (out / "sweep.json").write_bytes((reference / "sweep.json").read_bytes())
    victim = min((out / "runs").glob("*.json"))
    doc = json.loads(victim.read_text())
    doc["trace"]["rounds"][1]["test_accuracy"] = 1.0
    victim.write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="result_sha256 does not match"):
        sweep.run(TINY, out)
    with pytest.raises(StoreError, match=victim.name):
        sweep.report(out, plots=False)
    victim.write_text(victim.read_text()[:100])  # a truncated file
    with pytest.raises(StoreError, match="not valid JSON"):
        sweep.run(TINY, out)


def test_a_result_that_fails_its_checks_is_a_failed_attempt(tmp_path):
    liar = tmp_path / "liar.py"
    liar.write_text(
        "import json, sys\nreq = json.loads(sys.stdin.read())\n"
        "print(json.dumps({'file': '{}', 'compute_seconds': 0}))\n"
    )
    summary = sweep.run(
        {**TINY, "seeds": [0], "rules": ["magnitude"]},
        tmp_path / "out",
        job_command=[sys.executable, str(liar)],
    )
    assert summary.completed == 0 and len(summary.failed) == 1
    assert "not a refprune.sweep-run file" in next(iter(summary.failed.values()))
    assert not list((tmp_path / "out" / "runs").glob("*.json"))


def test_one_sweep_per_output_directory(tmp_path):
    store = sweep.RunStore(tmp_path).open()
    try:
        with pytest.raises(StoreError, match="another sweep is writing"):
            sweep.run(TINY, tmp_path)
    finally:
        store.close()


# ---------------------------------------------------------------- the report
def test_report_writes_the_table_summary_and_plots(reference, tmp_path):
    pytest.importorskip("matplotlib", reason="the report's plots need the 'sweep' extra")
    summary = sweep.report(reference, tmp_path)
    assert summary["runs"] == {"planned": 4, "finished": 4, "failed": [], "missing": 0}
    rows = json.loads((tmp_path / "table.json").read_text())
    assert len(rows) == 4 * (3 + 2 + 2)  # imp rounds 0-2, two controls x 2 rounds
    header = (tmp_path / "table.csv").read_text().splitlines()[0].split(",")
    assert header[-4:] == ["class_0", "class_1", "class_2", "class_3"]
    for name in summary["files"]:
        assert (tmp_path / name).stat().st_size > 0
    assert sum(name.endswith(".png") for name in summary["files"]) == 3
    group = next(iter(summary["groups"].values()))
    assert set(group["rules"]) == {"magnitude", "random"}
    assert group["rules"]["magnitude"]["rounds"][2]["imp_test_accuracy"]["n"] == 2


def test_random_labels_stay_within_the_binomial_interval_of_chance(tmp_path):
    out = tmp_path / "out"
    sweep.run(
        {
            "seeds": [0, 1],
            "datasets": ["random_labels"],
            "rounds": 3,
            "controls": ["reinit"],
            "alphas": [0.5],
            "train": {"epochs": 3},
            "data": {"random_labels": {"n_samples": 400}},
        },
        out,
    )
    chance = next(iter(sweep.report(out, plots=False)["groups"].values()))["chance"]
    assert chance["checks"] == 2 * (4 + 3) and chance["chance"] == 0.25 and chance["n_test"] == 200
    assert chance["outside"] == 0, chance["first_outside"]


# ---------------------------------------------------------------- the command line
def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exc:
        cli(args)
    return exc.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    "args, content, message",
    [
        (["--workers", "0"], TINY_TOML, "argument --workers: expected an integer >= 1, got 0"),
        (["--scheduler", "localhost"], TINY_TOML, "argument --scheduler: expected an address"),
        (["--workers", "2", "--dask-local", "2"], TINY_TOML, "not allowed with argument"),
        (["--retries", "x"], TINY_TOML, "argument --retries: expected an integer >= 0"),
        ([], "seeds = [0\n", "is not valid TOML"),
        ([], "seeds = [0]\nrules = ['biggest']\n", "rules[0]: unknown value 'biggest'"),
        ([], "seed = [0]\n", "seed: unknown key"),
        ([], None, "cannot read"),
        (
            [],
            "seeds = [0]\narchitectures = ['default', [48, 24]]\n",
            "two entries give the same network",
        ),
    ],
)
def test_bad_arguments_and_config_files_get_usage_and_one_line(
    tmp_path, capsys, args, content, message
):
    cfg = tmp_path / "s.toml"
    if content is not None:
        cfg.write_text(content)
    code, err = run_cli(["sweep", str(cfg), *args], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and lines[0].startswith("usage: refprune sweep")
    assert message in lines[-1] and lines[-1].startswith("refprune sweep: error:")
    assert "Traceback" not in err


def test_digits_without_scikit_learn_is_named_before_anything_runs(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a)
    )
    cfg = tmp_path / "d.toml"
    cfg.write_text("seeds = [0]\ndatasets = ['digits']\n")
    code, err = run_cli(["sweep", str(cfg)], capsys)
    assert code == 2 and "'digits' needs scikit-learn" in err.splitlines()[-1]
    assert not (tmp_path / "d-sweep").exists()


def test_report_of_a_missing_directory_gets_usage(tmp_path, capsys):
    code, err = run_cli(["sweep-report", str(tmp_path / "nowhere")], capsys)
    assert code == 2 and "argument out_dir" in err.splitlines()[-1] and "Traceback" not in err


def test_cli_sweep_dry_run_then_run_then_report(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default output directory: ./one-sweep
    cfg = tmp_path / "one.toml"
    cfg.write_text(TINY_TOML.replace("seeds = [0, 1]", "seeds = [1]").replace(', "random"]', "]"))
    assert cli(["sweep", str(cfg), "--dry-run"]) == 0
    assert "1 runs, 0 already in" in capsys.readouterr().out
    assert cli(["sweep", str(cfg), "--quiet", "--workers", "1"]) == 0
    assert "1 ran now, 0 failed" in capsys.readouterr().err
    assert cli(["sweep", str(cfg), "--dry-run"]) == 0
    assert "1 runs, 1 already in" in capsys.readouterr().out
    assert cli(["sweep-report", str(tmp_path / "one-sweep"), "--no-plots"]) == 0
    assert "1 of 1 runs reported" in capsys.readouterr().out


def test_progress_line_counts_and_estimates():
    class Tty:
        def __init__(self):
            self.text = ""

        def isatty(self):
            return False

        def write(self, s):
            self.text += s

        def flush(self):
            pass

    stream = Tty()
    from refprune.sweep.runner import Progress

    bar = Progress(10, 2, stream=stream, width=10)
    bar.update(2, 0, force=True)
    bar.update(4, 1)
    lines = stream.text.splitlines()
    assert lines[0].startswith("[##........] 2/10 done, 0 failed, 8 remaining")
    assert lines[1].startswith("[#####.....] 4/10 done, 1 failed, 5 remaining, ~0:00:")


def test_environment_of_a_run_has_one_blas_thread_and_keeps_the_machine_settings():
    from refprune.sweep.job import JOB_ENV

    assert JOB_ENV["OPENBLAS_NUM_THREADS"] == "1"
    assert not [k for k in JOB_ENV if k.startswith("OPENBLAS_") and k != "OPENBLAS_NUM_THREADS"]


def test_cli_sigterm_stops_a_sweep_like_ctrl_c(tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY_TOML)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "refprune",
            "sweep",
            str(cfg),
            "--out",
            str(out),
            "--workers",
            "1",
            "--quiet",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not list((out / "runs").glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "run the same command again to resume" in err
    assert "Traceback" not in err and 1 <= len(files(out)) < 4


def test_cli_ctrl_c_exits_130_and_says_how_to_resume(tmp_path, capsys, monkeypatch):
    from refprune.sweep import runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run", interrupted)
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY_TOML)
    assert cli(["sweep", str(cfg), "--quiet"]) == 130
    assert "run the same command again to resume" in capsys.readouterr().err


def test_stopping_the_pool_leaves_no_thread_to_race_the_exit_hook():
    # concurrent.futures' exit hook writes to the manager thread's wake-up pipe; on Python < 3.12
    # that races the thread closing it unless the thread has finished before the interpreter exits.
    from refprune.sweep.runner import _stop_pool, default_executor

    pool = default_executor(1)
    pool.submit(time.sleep, 30)
    deadline = time.monotonic() + 60
    while not pool._processes and time.monotonic() < deadline:
        time.sleep(0.01)
    manager = pool._executor_manager_thread
    _stop_pool(pool)
    assert manager is not None and not manager.is_alive()
