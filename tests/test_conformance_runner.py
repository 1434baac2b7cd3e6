"""The runner: the reference passes, gaps are "not provided", defects fail with a usable report."""

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conformance import __main__ as cli
from conformance.backend import Backend, NotProvided, ReferenceBackend, load_backend, provides
from conformance.conventions import PROFILES, get_profile
from conformance.runner import (
    NOT_PROVIDED,
    PASSED,
    XFAIL,
    XPASS,
    format_report,
    golden_case,
    py_literal,
    read_xfails,
    run,
)

FEW = 5  # Hypothesis examples per property in these tests
HANG = 1800  # a guard against a hung child, not a speed limit


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
        return ReferenceBackend().hessian_diag(
            params=params, X=X, y=y, activation=activation, loss=loss, method=method
        )


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
    assert (
        "passed" in text
        and "not provided" in text
        and "expected-fail" in text.replace("exp-fail", "expected-fail")
    )
    assert "time: golden" in text and "result: OK" in text
    for family in ("masks", "curvature", "scores", "schedules", "lottery", "profiles"):
        assert family in text


def test_an_empty_backend_is_not_provided_and_checks_nothing():
    report = run(object(), max_examples=FEW, backend_spec="builtins:object")
    assert {r.status for r in report.results} == {NOT_PROVIDED}
    assert report.checked == 0 and not report.ok
    assert "result: FAILED (nothing was checked" in format_report(report)


def test_a_backend_can_refuse_one_variant():
    report = run(OnlyExactDiagonal(), families=["curvature"], max_examples=FEW)
    diag = [r for r in report.results if r.kind == "golden" and r.op == "hessian_diag"]
    exact = [r for r in diag if "exact" in r.comment]
    assert exact and all(r.status == PASSED for r in exact)
    assert all(r.status == NOT_PROVIDED for r in diag if r not in exact)
    assert report.ok


def test_a_defect_fails_with_id_flags_diff_and_reproduction():
    report = run(
        TiesToHigherIndex(),
        families=["masks"],
        max_examples=FEW,
        backend_spec="tests.test_conformance_runner:TiesToHigherIndex",
    )
    assert not report.ok
    golden_failures = [r for r in report.failures if r.kind == "golden"]
    assert golden_failures and all(
        r.op == "keep_top_k" and "ties" in r.flags for r in golden_failures
    )
    first = golden_failures[0]
    assert "masks differ" in first.detail and "expected" in first.detail
    assert f"--case {first.id}" in first.reproduce and "golden_case(" in first.reproduce
    prop = [r for r in report.failures if r.kind == "property"]
    assert [r.id for r in prop] == ["masks/keep-top-k-differential", "masks/keep-top-k-edge-ties"]
    assert "--seed 0" in prop[0].reproduce and "backend.keep_top_k(" in prop[0].reproduce
    text = format_report(report)
    assert f"FAILED masks case {first.id}" in text and "result: FAILED" in text


def test_golden_reproduction_snippet_runs():
    case = golden_case(next(iter(_ids_of_op("keep_top_k"))))
    backend = load_backend("conformance.backend:ReferenceBackend")
    out = backend.keep_top_k(**case.inputs)
    assert np.array_equal(out, case.expected["mask"])


def test_property_reproduction_snippet_runs():
    report = run(
        TiesToHigherIndex(),
        property_names=["masks/keep-top-k-differential"],
        max_examples=FEW,
        backend_spec="tests.test_conformance_runner:TiesToHigherIndex",
    )
    snippet = report.failures[0].reproduce.split(
        "# or call the backend with the falsifying example:\n"
    )[1]
    namespace = {}
    exec(
        compile(snippet.replace("print(", "results.append("), "<snippet>", "exec"),
        dict(namespace, results=(results := [])),
    )
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
    path.write_text(
        "# known deviations\n"
        + "\n".join(ids)
        + "\n999999  # no such case\nmasks/no-such-property\n"
        + "masks/keep-top-k-count\n"
    )
    xfails = read_xfails(path)
    report = run(TiesToHigherIndex(), families=["masks"], xfails=xfails, max_examples=FEW)
    assert {r.id for r in report.results if r.status == XFAIL} >= set(ids)
    assert [r.id for r in report.results if r.status == XPASS] == ["masks/keep-top-k-count"]
    assert report.unmatched_xfails == ["999999", "masks/no-such-property"]
    assert [r.id for r in report.failures] == [
        "masks/keep-top-k-differential",
        "masks/keep-top-k-edge-ties",
    ]
    assert "match no check: 999999, masks/no-such-property" in format_report(report)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_each_profile_backend_passes_its_own_profile(name):
    report = run(ProfileBackend(name), profile=name, families=["profiles"], max_examples=FEW)
    assert report.ok, format_report(report)
    assert any(r.status == PASSED and r.kind == "golden" for r in report.results)


def test_profile_cases_tell_the_libraries_apart():
    for claimed in ("torch", "tfmot", "open-lth", "shrinkbench"):
        report = run(
            ProfileBackend(claimed), profile="reference", families=["profiles"], properties=False
        )
        assert not report.ok, f"the {claimed} conventions pass as the reference"


def test_unstable_ties_are_compared_up_to_ties():
    report = run(
        TiesToHigherIndex(),
        profile="torch",
        families=["masks"],
        golden_cases=True,
        properties=False,
    )
    assert report.ok, format_report(report)


def test_cli_exit_codes_and_json_report(tmp_path, capsys):
    path = tmp_path / "report.json"
    code = cli.main(["run", "--family", "schedules", "--max-examples", "3", "--report", str(path)])
    assert code == 0
    data = json.loads(path.read_text())
    assert data["ok"] and data["summary"]["schedules"]["golden"]["passed"] > 0
    assert set(data["seconds"]) == {"start", "golden", "properties", "total"}
    assert data["isolation"] == "process" and data["checked"] == 27  # 21 golden, 6 properties
    code = cli.main(
        [
            "run",
            "--backend",
            "tests.test_conformance_runner:FloorEverywhere",
            "--family",
            "masks",
            "--golden-only",
        ]
    )
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
    value = {
        "a": np.array([[0.1, -0.0], [5e-324, 1e300]]),
        "b": np.array([True, False]),
        "c": np.array([1, 2], dtype=np.int64),
        "d": [1.5, "x", None],
    }
    back = eval(py_literal(value), {"np": np})
    assert np.array_equal(back["a"].view(np.uint64), value["a"].view(np.uint64))
    assert back["b"].dtype == bool and back["c"].dtype == np.int64 and back["d"] == [1.5, "x", None]


def test_module_entry_point_runs_golden_only_fast():
    proc = subprocess.run(
        [sys.executable, "-m", "conformance", "run", "--golden-only"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "result: OK" in proc.stdout


def _ids_of_op(op):
    from conformance import golden

    return [c.id for p in golden.family_files() for c in golden.load(p).cases if c.op == op]


def test_same_seed_same_falsifying_example():
    runs = [
        run(
            TiesToHigherIndex(),
            property_names=["masks/keep-top-k-differential"],
            max_examples=FEW,
            seed=3,
        )
        for _ in range(2)
    ]
    assert runs[0].failures[0].reproduce == runs[1].failures[0].reproduce
    assert "--seed 3" in runs[0].failures[0].reproduce


def test_usage_errors_exit_2(capsys):
    assert cli.main(["run", "--family", "nope"]) == 2
    assert cli.main(["run", "--case", "999999999"]) == 2
    assert cli.main(["run", "--max-examples", "0"]) == 2
    assert "error:" in capsys.readouterr().err


# --------------------------------------------------------------------------- a tampered golden directory
def _golden_copy(tmp_path):
    from conformance import golden

    directory = tmp_path / "golden"
    shutil.copytree(golden.GOLDEN_DIR, directory)
    return directory


def _reseal(directory):
    """Rewrite the manifest, as someone who edits a file and recomputes its digest would."""
    from conformance import golden

    (directory / "MANIFEST.txt").write_text(golden.manifest_text(directory), encoding="ascii")


def _edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _refusal(directory, capsys, *extra):
    code = cli.main(["run", "--golden-dir", str(directory), "--golden-only", *extra])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert "Traceback" not in err and out == ""
    assert err.startswith(f"error: refusing the golden directory {directory}")
    return err


def test_an_untouched_copy_of_the_golden_directory_runs(tmp_path, capsys):
    directory = _golden_copy(tmp_path)
    assert (
        cli.main(["run", "--golden-dir", str(directory), "--family", "schedules", "--golden-only"])
        == 0
    )
    assert "result: OK" in capsys.readouterr().out


def test_one_changed_expected_value_is_refused(tmp_path, capsys):
    directory = _golden_copy(tmp_path)
    path = directory / "masks.json"
    text = path.read_text()
    path.write_text(text.replace('"count": 2}', '"count": 3}', 1))
    assert path.read_text() != text
    err = _refusal(directory, capsys)
    assert "masks.json: SHA-256 differs from MANIFEST.txt" in err


def test_an_emptied_file_is_refused_even_with_a_resealed_manifest(tmp_path, capsys):
    directory = _golden_copy(tmp_path)
    (directory / "masks.json").write_text("")
    assert "masks.json: SHA-256 differs" in _refusal(directory, capsys)
    _reseal(directory)
    assert "masks.json: the file is empty" in _refusal(directory, capsys)


def test_a_truncated_file_is_refused_with_its_name(tmp_path, capsys):
    directory = _golden_copy(tmp_path)
    path = directory / "lottery.json"
    path.write_text(path.read_text()[:5000])
    _reseal(directory)
    err = _refusal(directory, capsys)
    assert "lottery.json: not ASCII JSON" in err


def test_a_changed_digest_is_refused(tmp_path, capsys):
    directory = _golden_copy(tmp_path)
    manifest = directory / "MANIFEST.txt"
    lines = manifest.read_text().splitlines(keepends=True)
    lines[0] = ("0" if lines[0][0] != "0" else "1") + lines[0][1:]
    manifest.write_text("".join(lines))
    name = lines[0].split()[1]
    assert f"{name}: SHA-256 differs from MANIFEST.txt" in _refusal(directory, capsys)


def test_missing_and_extra_files_are_refused(tmp_path, capsys):
    directory = _golden_copy(tmp_path)
    (directory / "schedules.json").unlink()
    (directory / "notes.txt").write_text("x\n")
    err = _refusal(directory, capsys)
    assert "MANIFEST.txt lists schedules.json, which does not exist" in err
    assert "notes.txt is not in MANIFEST.txt" in err
    _reseal(directory)
    assert "schedules.json is missing" in _refusal(directory, capsys)


def test_an_unknown_family_file_is_refused(tmp_path, capsys):
    directory = _golden_copy(tmp_path)
    shutil.copy(directory / "masks.json", directory / "extra.json")
    _reseal(directory)
    assert "extra.json: no family of the suite is called 'extra'" in _refusal(directory, capsys)


def test_a_changed_schema_or_generator_version_is_refused(tmp_path, capsys):
    directory = _golden_copy(tmp_path)
    _edit_json(directory / "scores.json", lambda d: d.update(schema_version=99))
    _reseal(directory)
    from conformance.golden import SCHEMA_VERSION

    assert f"scores.json: schema_version 99 != {SCHEMA_VERSION}" in _refusal(directory, capsys)
    directory = _golden_copy(tmp_path / "again")
    _edit_json(directory / "scores.json", lambda d: d.update(generator_version="0"))
    _reseal(directory)
    err = _refusal(directory, capsys)
    assert "scores.json: generator_version '0'" in err


def test_a_case_missing_a_field_is_refused_with_file_and_case_id(tmp_path, capsys):
    directory = _golden_copy(tmp_path)
    holder = {}

    def drop(data):
        holder["id"] = data["cases"][3]["id"]
        del data["cases"][3]["expected"]

    _edit_json(directory / "masks.json", drop)
    _reseal(directory)
    err = _refusal(directory, capsys)
    assert f"masks.json case {holder['id']}: missing field 'expected'" in err


def test_a_malformed_case_is_refused_without_a_traceback(tmp_path, capsys):
    directory = _golden_copy(tmp_path)
    _edit_json(directory / "curvature.json", lambda d: d["cases"].__setitem__(0, "not a case"))
    _reseal(directory)
    assert "curvature.json: malformed" in _refusal(directory, capsys)


def test_the_pytest_entry_refuses_a_tampered_directory_too(tmp_path):
    directory = _golden_copy(tmp_path)
    (directory / "masks.json").write_text("{}")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "conformance.pytest_plugin",
            "--pyargs",
            "conformance",
            "--conformance-golden-dir",
            str(directory),
        ],
        capture_output=True,
        text=True,
        timeout=HANG,
        cwd=tmp_path,
    )
    assert proc.returncode not in (0, 1), proc.stdout + proc.stderr
    assert "refusing the golden directory" in proc.stdout + proc.stderr
    assert "masks.json: SHA-256 differs" in proc.stdout + proc.stderr


def test_a_selection_that_runs_no_check_is_not_ok():
    from conformance import golden

    torch_case = next(
        c.id for c in golden.load_family("profiles").cases if "profile:torch" in c.flags
    )
    report = run(ReferenceBackend(), case_ids=[torch_case])
    assert report.results == [] and not report.ok
    assert "nothing was checked: no check was selected" in format_report(report)


_MASK_PROPS = [
    "masks/fraction-to-count-differential",
    "masks/fraction-to-count-decimal-products",
    "masks/keep-top-k-differential",
    "masks/keep-top-k-count",
    "masks/select-differential",
    "masks/select-nesting-counts",
]


@pytest.mark.parametrize(
    "spec", ["conformance.backend:ReferenceBackend", f"{__name__}:FloorEverywhere"]
)
def test_properties_in_two_processes_report_what_one_process_reports(spec):
    one = run(spec, property_names=_MASK_PROPS, max_examples=FEW, jobs=1)
    two = run(spec, property_names=_MASK_PROPS, max_examples=FEW, jobs=2)
    fields = [(r.id, r.status, r.detail, r.reproduce) for r in one.results]
    assert fields == [(r.id, r.status, r.detail, r.reproduce) for r in two.results]
    assert [r.id for r in one.results] == _MASK_PROPS
    assert one.ok == (spec == "conformance.backend:ReferenceBackend")


def test_jobs_must_be_positive_and_need_a_backend_each_process_can_open(capsys):
    with pytest.raises(ValueError, match="jobs must be an integer >= 1"):
        run(property_names=_MASK_PROPS, jobs=0)
    with pytest.raises(ValueError, match="a backend every process can open"):
        run(ReferenceBackend(), property_names=_MASK_PROPS, jobs=2)
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "--jobs", "0"])
    assert exc.value.code == 2
    assert "argument --jobs: expected an integer >= 1, got '0'" in capsys.readouterr().err
