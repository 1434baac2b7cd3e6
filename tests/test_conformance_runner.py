"""The runner: the reference passes, gaps are "not provided", defects fail with a usable report."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from conformance import __main__ as cli
from conformance.backend import Backend, NotProvided, ReferenceBackend, load_backend, provides
from conformance.conventions import PROFILES, get_profile
from conformance.runner import (FAILED, NOT_PROVIDED, PASSED, XFAIL, XPASS, format_report, golden_case,
                                py_literal, read_xfails, run)

FEW = 5                                  # Hypothesis examples per property in these tests


class TiesToHigherIndex(ReferenceBackend):
    """keep_top_k that keeps the later of equal scores."""

    name = "ties to the higher index"

    def keep_top_k(self, *, scores, k):
        flat = np.asarray(scores).ravel()
        order = np.lexsort((-np.arange(flat.size), -flat))
        keep = np.zeros(flat.size, dtype=bool)
        keep[order[:k]] = True
        return keep.reshape(np.shape(scores))


class FloorEverywhere(ReferenceBackend):
    def fraction_to_count(self, *, fraction, n, rounding):
        return int(math.floor(fraction * n))


class OnlyExactDiagonal(Backend):
    """Provides one method, and only one of its variants."""

    def hessian_diag(self, *, params, X, y, activation, loss, method):
        if method != "exact":
            raise NotProvided
        return ReferenceBackend().hessian_diag(params=params, X=X, y=y, activation=activation, loss=loss,
                                               method=method)


class Mutating(ReferenceBackend):
    def keep_top_k(self, *, scores, k):
        out = super().keep_top_k(scores=scores, k=k)
        scores *= 0.5
        return out


class ProfileBackend(Backend):
    """profile_mask computed by a named convention profile (what a library adapter would return)."""

    def __init__(self, profile):
        self.profile = get_profile(profile)

    def profile_mask(self, *, scores, amount, alive, scope, ignore):
        return self.profile.keep_masks(scores, amount, alive=alive, scope=scope, ignore=ignore)


@pytest.fixture(scope="module")
def reference_report():
    return run(ReferenceBackend(), max_examples=FEW)


def test_reference_passes_everything(reference_report):
    assert reference_report.ok, format_report(reference_report)
    statuses = {r.status for r in reference_report.results}
    assert statuses == {PASSED}
    kinds = {(r.family, r.kind) for r in reference_report.results}
    for family in {r.family for r in reference_report.results}:
        assert (family, "golden") in kinds and (family, "property") in kinds


def test_summary_table_and_timing_are_printed(reference_report):
    text = format_report(reference_report)
    assert "passed" in text and "not provided" in text and "expected-fail" in text.replace("exp-fail", "expected-fail")
    assert "time: golden" in text and "result: OK" in text
    for family in ("masks", "curvature", "scores", "schedules", "lottery", "profiles"):
        assert family in text


def test_an_empty_backend_is_not_provided_never_passed_or_failed():
    report = run(object(), max_examples=FEW, backend_spec="builtins:object")
    assert report.ok
    assert {r.status for r in report.results} == {NOT_PROVIDED}


def test_a_backend_can_refuse_one_variant():
    report = run(OnlyExactDiagonal(), families=["curvature"], max_examples=FEW)
    diag = [r for r in report.results if r.kind == "golden" and r.op == "hessian_diag"]
    exact = [r for r in diag if "exact" in r.comment]
    assert exact and all(r.status == PASSED for r in exact)
    assert all(r.status == NOT_PROVIDED for r in diag if r not in exact)
    assert report.ok


def test_a_defect_fails_with_id_flags_diff_and_reproduction():
    report = run(TiesToHigherIndex(), families=["masks"], max_examples=FEW,
                 backend_spec="tests.test_conformance_runner:TiesToHigherIndex")
    assert not report.ok
    golden_failures = [r for r in report.failures if r.kind == "golden"]
    assert golden_failures and all(r.op == "keep_top_k" and "ties" in r.flags for r in golden_failures)
    first = golden_failures[0]
    assert "masks differ" in first.detail and "expected" in first.detail
    assert f"--case {first.id}" in first.reproduce and "golden_case(" in first.reproduce
    prop = [r for r in report.failures if r.kind == "property"]
    assert [r.id for r in prop] == ["masks/keep-top-k-differential"]
    assert "--seed 0" in prop[0].reproduce and "backend.keep_top_k(" in prop[0].reproduce
    text = format_report(report)
    assert f"FAILED masks case {first.id}" in text and "result: FAILED" in text


def test_golden_reproduction_snippet_runs():
    case = golden_case(next(iter(_ids_of_op("keep_top_k"))))
    backend = load_backend("conformance.backend:ReferenceBackend")
    out = backend.keep_top_k(**case.inputs)
    assert np.array_equal(out, case.expected["mask"])


def test_property_reproduction_snippet_runs():
    report = run(TiesToHigherIndex(), property_names=["masks/keep-top-k-differential"], max_examples=FEW,
                 backend_spec="tests.test_conformance_runner:TiesToHigherIndex")
    snippet = report.failures[0].reproduce.split("# or call the backend with the falsifying example:\n")[1]
    namespace = {}
    exec(compile(snippet.replace("print(", "results.append("), "<snippet>", "exec"),
         dict(namespace, results=(results := [])))
    assert len(results) == 2 and not np.array_equal(results[0], results[1])


def test_count_defect_is_caught_by_golden_cases_with_half_way_flags():
    report = run(FloorEverywhere(), families=["masks"], max_examples=FEW)
    failed = [r for r in report.failures if r.kind == "golden"]
    assert failed and all(r.op == "fraction_to_count" for r in failed)
    assert any("half-way" in r.flags for r in failed)


def test_mutating_an_argument_is_a_failure():
    report = run(Mutating(), families=["masks"], golden_cases=True, properties=False)
    assert any("modified its arguments ['scores']" in r.detail for r in report.failures)


def test_xfails_turn_failures_into_expected_failures_and_report_unknown_ids(tmp_path):
    first = run(TiesToHigherIndex(), families=["masks"], properties=False)
    ids = [r.id for r in first.failures]
    path = tmp_path / "xfails.txt"
    path.write_text("# known deviations\n" + "\n".join(ids) + "\n999999  # no such case\nmasks/no-such-property\n"
                    + "masks/keep-top-k-count\n")
    xfails = read_xfails(path)
    report = run(TiesToHigherIndex(), families=["masks"], xfails=xfails, max_examples=FEW)
    assert {r.id for r in report.results if r.status == XFAIL} >= set(ids)
    assert [r.id for r in report.results if r.status == XPASS] == ["masks/keep-top-k-count"]
    assert report.unmatched_xfails == ["999999", "masks/no-such-property"]
    assert [r.id for r in report.failures] == ["masks/keep-top-k-differential"]
    assert "match no check: 999999, masks/no-such-property" in format_report(report)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_each_profile_backend_passes_its_own_profile(name):
    report = run(ProfileBackend(name), profile=name, families=["profiles"], max_examples=FEW)
    assert report.ok, format_report(report)
    assert any(r.status == PASSED and r.kind == "golden" for r in report.results)


def test_profile_cases_tell_the_libraries_apart():
    for claimed in ("torch", "tfmot", "open-lth", "shrinkbench"):
        report = run(ProfileBackend(claimed), profile="reference", families=["profiles"], properties=False)
        assert not report.ok, f"the {claimed} conventions pass as the reference"


def test_unstable_ties_are_compared_up_to_ties():
    report = run(TiesToHigherIndex(), profile="torch", families=["masks"], golden_cases=True, properties=False)
    assert report.ok, format_report(report)


def test_cli_exit_codes_and_json_report(tmp_path, capsys):
    path = tmp_path / "report.json"
    code = cli.main(["run", "--family", "schedules", "--max-examples", "3", "--report", str(path)])
    assert code == 0
    data = json.loads(path.read_text())
    assert data["ok"] and data["summary"]["schedules"]["golden"]["passed"] > 0
    assert set(data["seconds"]) == {"golden", "properties", "total"}
    code = cli.main(["run", "--backend", "tests.test_conformance_runner:FloorEverywhere", "--family", "masks",
                     "--golden-only"])
    assert code == 1
    out = capsys.readouterr().out
    assert "FAILED masks case" in out and "time: golden" in out


def test_cli_single_case_and_lint(capsys):
    case_id = next(iter(_ids_of_op("schedule")))
    assert cli.main(["run", "--case", str(case_id)]) == 0
    assert "total" in capsys.readouterr().out
    assert cli.main(["lint"]) == 0


def test_load_backend_forms():
    assert isinstance(load_backend("conformance.backend:ReferenceBackend"), ReferenceBackend)
    assert isinstance(load_backend(ReferenceBackend), ReferenceBackend)
    with pytest.raises(ValueError, match="package.module:object"):
        load_backend("conformance.backend")
    with pytest.raises(ValueError, match="no attribute"):
        load_backend("conformance.backend:Nope")


def test_provides_ignores_placeholders():
    assert not provides(Backend(), "gradient")
    assert provides(ReferenceBackend(), "gradient")
    with pytest.raises(ValueError, match="op must be one of"):
        provides(Backend(), "nope")


def test_py_literal_rebuilds_values_exactly():
    value = {"a": np.array([[0.1, -0.0], [5e-324, 1e300]]), "b": np.array([True, False]),
             "c": np.array([1, 2], dtype=np.int64), "d": [1.5, "x", None]}
    back = eval(py_literal(value), {"np": np})
    assert np.array_equal(back["a"].view(np.uint64), value["a"].view(np.uint64))
    assert back["b"].dtype == bool and back["c"].dtype == np.int64 and back["d"] == [1.5, "x", None]


def test_module_entry_point_runs_golden_only_fast():
    proc = subprocess.run([sys.executable, "-m", "conformance", "run", "--golden-only"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "result: OK" in proc.stdout


def _ids_of_op(op):
    from conformance import golden
    return [c.id for p in golden.family_files() for c in golden.load(p).cases if c.op == op]


def test_same_seed_same_falsifying_example():
    runs = [run(TiesToHigherIndex(), property_names=["masks/keep-top-k-differential"], max_examples=FEW, seed=3)
            for _ in range(2)]
    assert runs[0].failures[0].reproduce == runs[1].failures[0].reproduce
    assert "--seed 3" in runs[0].failures[0].reproduce


def test_usage_errors_exit_2(capsys):
    assert cli.main(["run", "--family", "nope"]) == 2
    assert cli.main(["run", "--case", "999999999"]) == 2
    assert cli.main(["run", "--max-examples", "0"]) == 2
    assert "error:" in capsys.readouterr().err
