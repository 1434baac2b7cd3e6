"""The command line: every bad argument gets the usage line and one message naming it, exit 2.

Each row of the table is one option with one bad value. In-process runs check the exit status
and stderr (an exception other than argparse's exit would fail the test, as a traceback);
one run in a subprocess checks the same from the outside. ``run_imp`` and ``train`` are
replaced by stubs that record their arguments, so a value that slips through is seen at once
and nothing trains.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

import refprune.lottery
import refprune.train
from refprune.__main__ import main


class Reached(Exception):
    """Raised by the stubs: the arguments got through to the computation."""


@pytest.fixture
def calls(monkeypatch):
    seen: list[dict] = []

    def stub(*args, **kwargs):
        seen.append(kwargs)
        raise Reached

    monkeypatch.setattr(refprune.lottery, "run_imp", stub)
    monkeypatch.setattr(refprune.train, "train", stub)
    return seen


BAD = [
    # (command, option, value, words the message must contain)
    ("demo", "--seed", "-1", ">= 0"),
    ("demo", "--seed", "x", "integer"),
    ("demo", "--seed", "1.5", "integer"),
    ("demo", "--epochs", "0", ">= 1"),
    ("demo", "--epochs", "-1", ">= 1"),
    ("demo", "--epochs", "ten", "integer"),
    ("lottery", "--dataset", "mnist", "invalid choice"),
    ("lottery", "--rule", "bogus", "invalid choice"),
    ("lottery", "--scope", "network", "invalid choice"),
    ("lottery", "--rounds", "-1", ">= 0"),
    ("lottery", "--rounds", "2.5", "integer"),
    ("lottery", "--rounds", "x", "integer"),
    ("lottery", "--alpha", "1", "must be < 1"),
    ("lottery", "--alpha", "1.5", "[0, 1]"),
    ("lottery", "--alpha", "-0.1", "[0, 1]"),
    ("lottery", "--alpha", "nan", "finite"),
    ("lottery", "--alpha", "inf", "finite"),
    ("lottery", "--alpha", "x", "number"),
    ("lottery", "--output-rate", "-1", "[0, inf)"),
    ("lottery", "--output-rate", "nan", "finite"),
    ("lottery", "--output-rate", "inf", "finite"),
    ("lottery", "--output-rate", "x", "number"),
    ("lottery", "--output-rate", "6", "alpha x output rate must be <= 1"),
    ("lottery", "--rewind", "start", "unknown rewind"),
    ("lottery", "--rewind", "step:-1", "non-negative integer"),
    ("lottery", "--rewind", "step:x", "non-negative integer"),
    ("lottery", "--rewind", "step:100000", "step K must be in [0, 288]"),
    ("lottery", "--seed", "-1", ">= 0"),
    ("lottery", "--seed", "x", "integer"),
    ("lottery", "--epochs", "0", ">= 1"),
    ("lottery", "--epochs", "-1", ">= 1"),
    ("lottery", "--epochs", "x", "integer"),
    ("lottery", "--lr", "0", "(0, inf)"),
    ("lottery", "--lr", "-0.1", "(0, inf)"),
    ("lottery", "--lr", "nan", "finite"),
    ("lottery", "--lr", "inf", "finite"),
    ("lottery", "--lr", "x", "number"),
    ("lottery", "--batch-size", "0", ">= 1"),
    ("lottery", "--batch-size", "-3", ">= 1"),
    ("lottery", "--batch-size", "x", "integer"),
    ("lottery", "--momentum", "1", "[0, 1)"),
    ("lottery", "--momentum", "1.5", "[0, 1)"),
    ("lottery", "--momentum", "-0.1", "[0, 1)"),
    ("lottery", "--momentum", "nan", "finite"),
    ("lottery", "--weights", "base64", "invalid choice"),
    ("lottery", "--out", "{missing}/trace.json", "does not exist"),
    ("lottery", "--out", "{tmp}", "expected a file path"),
    ("lottery", "--plot", "{missing}/plot.png", "does not exist"),
]


def _argv(command, option, value, tmp_path):
    value = value.format(missing=tmp_path / "no-such-dir", tmp=tmp_path)
    extra = ["--alpha", "0.2"] if option == "--output-rate" else []
    return [command, *extra, option, value]


@pytest.mark.parametrize(
    "command, option, value, words", BAD, ids=[f"{c}{o}={v}" for c, o, v, _ in BAD]
)
def test_bad_argument_prints_usage_and_one_line_naming_it(
    command, option, value, words, calls, tmp_path, capsys
):
    with pytest.raises(SystemExit) as exit_:
        main(_argv(command, option, value, tmp_path))
    assert exit_.value.code == 2
    assert not calls, f"{option} {value} reached the computation"
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"usage: refprune {command}"), err
    message = lines[-1]
    assert message.startswith(f"refprune {command}: error: argument {option}"), err
    assert words in message, message
    assert sum("error:" in line for line in lines) == 1 and "Traceback" not in err


def test_layer_collapse_of_the_schedule_is_refused_before_training(calls, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["lottery", "--alpha", "0.9", "--rounds", "10"])
    assert exit_.value.code == 2 and not calls
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("refprune lottery: error: argument --alpha:")
    assert "layers.0.weight with no alive weight at round 4" in message


@pytest.mark.parametrize(
    "option, value, check",
    [
        ("--rounds", "0", lambda kw: kw["rounds"] == 0),
        ("--alpha", "0", lambda kw: kw["alpha"] == 0.0),
        ("--output-rate", "0", lambda kw: kw["rate_multipliers"] == {"layers.2.weight": 0.0}),
        ("--momentum", "0", lambda kw: kw["train_config"].momentum == 0.0),
        ("--seed", "0", lambda kw: kw["train_config"].seed == 0),
        ("--epochs", "1", lambda kw: kw["train_config"].epochs == 1),
        ("--lr", "1e-9", lambda kw: kw["train_config"].lr == 1e-9),
        ("--batch-size", "1", lambda kw: kw["train_config"].batch_size == 1),
    ],
)
def test_small_and_zero_values_are_used_as_given(option, value, check, calls):
    with pytest.raises(Reached):
        main(["lottery", option, value])
    assert check(calls[0]), calls[0]


def test_demo_zero_seed_is_used(calls):
    with pytest.raises(Reached):
        main(["demo", "--seed", "0", "--epochs", "1"])
    assert calls[0]["epochs"] == 1 and calls[0]["seed"] == 0


def test_from_a_shell_exit_status_2_and_no_traceback():
    out = subprocess.run(
        [sys.executable, "-m", "refprune", "lottery", "--epochs", "-1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("usage: refprune lottery") and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        "refprune lottery: error: argument --epochs: must be an integer >= 1, got -1"
    )
