"""Golden files: they regenerate byte for byte, pass the lint, match the manifest, round-trip exactly."""

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conformance import golden
from conformance.backend import OPERATIONS, ReferenceBackend, provides
from conformance.families import load_families
from conformance.generate import generate


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    out = tmp_path_factory.mktemp("golden")
    generate(out)
    return out


def test_regeneration_is_byte_identical(regenerated):
    committed = sorted(p.name for p in golden.GOLDEN_DIR.iterdir() if p.is_file())
    fresh = sorted(p.name for p in regenerated.iterdir() if p.is_file())
    assert fresh == committed, "run `python -m conformance generate` and commit the result"
    for name in committed:
        assert (regenerated / name).read_bytes() == (golden.GOLDEN_DIR / name).read_bytes(), \
            f"{name} drifted from the reference: run `python -m conformance generate`"


def test_every_file_passes_the_lint():
    files = golden.family_files()
    assert files
    for path in files:
        assert golden.lint(path, OPERATIONS) == [], path.name


def test_manifest_matches_the_files():
    assert golden.verify_manifest() == []


def test_manifest_is_sha256sum_format():
    for line in (golden.GOLDEN_DIR / golden.MANIFEST).read_text().splitlines():
        digest, name = line.split("  ")
        assert len(digest) == 64 and int(digest, 16) >= 0 and (golden.GOLDEN_DIR / name).exists()


def test_ids_are_unique_across_families_and_match_the_registry():
    ids = golden.read_ids()
    seen = {}
    for path in golden.family_files():
        for case in golden.load(path).cases:
            assert case.id not in seen, f"id {case.id} in {path.name} and {seen[case.id]}"
            seen[case.id] = path.name
    assert set(seen) <= set(ids.values())
    assert len(set(ids.values())) == len(ids), "an id is used by two keys"


def test_every_family_has_a_file_and_every_reference_operation_has_cases():
    families = load_families()
    files = {p.stem for p in golden.family_files()}
    assert set(families) == files
    covered = {c.op for p in golden.family_files() for c in golden.load(p).cases}
    reference = ReferenceBackend()
    provided = {op for op in OPERATIONS if provides(reference, op)}
    assert provided - covered == set(), "operations the reference provides without golden cases"


def test_every_mask_rounding_mode_and_profile_is_covered():
    cases = [c for p in golden.family_files() for c in golden.load(p).cases]
    roundings = {c.inputs["rounding"] for c in cases if c.op == "fraction_to_count"}
    assert roundings == {"round-half-even", "floor", "ceil"}
    profiles = {f for c in cases if c.op == "profile_mask" for f in c.flags if f.startswith("profile:")}
    assert profiles == {"profile:reference", "profile:torch", "profile:tfmot", "profile:open-lth",
                        "profile:shrinkbench"}
    rules = {c.inputs["rule"] for c in cases if c.op == "scores"}
    from refprune.scores import RULES
    assert rules == set(RULES)
    methods = {c.inputs["method"] for c in cases if c.op == "hessian_diag"}
    assert methods == {"exact", "ggn", "obd"}
    activations = {c.inputs["activation"] for c in cases if c.op == "hessian_diag"}
    assert activations == {"relu", "tanh", "sigmoid", "identity"}
    rewinds = {c.inputs["options"]["rewind"].split(":")[0] for c in cases if c.op == "imp"}
    assert rewinds == {"init", "step", "lr", "finetune"}
    schedules = {c.inputs["name"] for c in cases if c.op == "schedule"}
    assert schedules == {"geometric", "one_shot", "cubic", "linear", "constant"}


def test_golden_files_stay_small():
    total = sum(p.stat().st_size for p in golden.GOLDEN_DIR.iterdir())
    assert total < 1_000_000, f"golden files total {total} bytes"


def test_lint_reports_each_kind_of_problem(tmp_path):
    path = golden.family_files()[0]
    data = json.loads(path.read_text())
    data["cases"][1]["id"] = data["cases"][0]["id"]                 # duplicate id
    data["cases"][2]["flags"] = sorted(data["cases"][2]["flags"] + ["undefined-flag"])
    data["number_of_cases"] += 1
    data["cases"][3]["inputs"]["bare"] = 0.5                      # a float that is not hex
    bad = tmp_path / path.name
    bad.write_text(json.dumps(data))
    problems = "\n".join(golden.lint(bad, OPERATIONS))
    assert "duplicate id" in problems
    assert "'undefined-flag' is not defined" in problems
    assert "number_of_cases" in problems
    assert "bare JSON number" in problems


def test_manifest_detects_an_edited_file(tmp_path):
    for p in golden.GOLDEN_DIR.iterdir():
        (tmp_path / p.name).write_bytes(p.read_bytes())
    victim = golden.family_files(tmp_path)[0]
    victim.write_bytes(victim.read_bytes().replace(b'"comment": "', b'"comment": "edited ', 1))
    assert any("SHA-256 differs" in p for p in golden.verify_manifest(tmp_path))


# ----------------------------------------------------------------------------- the encoding
EDGE = [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 0.1, -1 / 3, 1.0]


@pytest.mark.parametrize("x", EDGE)
def test_hexfloat_round_trips_exactly_and_is_canonical(x):
    text = golden.hexfloat(x)
    back = float.fromhex(text)
    assert back == x and math.copysign(1.0, back) == math.copysign(1.0, x)
    assert text == golden.hexfloat(back)
    assert not text.split("p")[0].endswith("0") or text.split("p")[0] in ("0x0", "-0x0")


def test_hexfloat_examples():
    assert golden.hexfloat(0.5) == "0x1p-1"
    assert golden.hexfloat(-0.0) == "-0x0p+0"
    assert golden.hexfloat(0.1) == "0x1.999999999999ap-4"
    assert golden.hexfloat(5e-324) == "0x0.0000000000001p-1022"


@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
                  elements=st.floats(allow_nan=False)))
def test_float_arrays_round_trip_bit_for_bit(a):
    back = golden.decode(json.loads(json.dumps(golden.encode(a))))
    assert back.shape == a.shape and back.dtype == np.float64
    assert np.array_equal(back.view(np.uint64), a.view(np.uint64))


@given(hnp.arrays(np.bool_, hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4)),
       hnp.arrays(np.int64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=4)))
def test_bool_and_int_arrays_round_trip(b, i):
    assert np.array_equal(golden.decode(golden.encode(b)), b) and golden.decode(golden.encode(b)).dtype == bool
    assert np.array_equal(golden.decode(golden.encode(i)), i) and golden.decode(golden.encode(i)).dtype == np.int64


def test_nested_values_round_trip():
    value = {"a": [1, 2.5, "x", None, True], "b": {"w": np.eye(2), "m": np.array([True, False])}}
    back = golden.decode(json.loads(json.dumps(golden.encode(value))))
    assert back["a"] == [1, 2.5, "x", None, True] and isinstance(back["a"][0], int)
    assert np.array_equal(back["b"]["w"], np.eye(2)) and back["b"]["m"].dtype == bool


def test_reserved_keys_are_refused():
    with pytest.raises(ValueError, match="must not have a key"):
        golden.encode({"float64": 1.0})


def test_dumps_is_deterministic_and_sorted():
    obj = {"b": [1, 2], "a": {"y": np.array([0.5]), "x": "s" * 120}}
    text = golden.dumps(golden.encode(obj))
    assert text == golden.dumps(golden.encode(dict(reversed(list(obj.items())))))
    assert text.index('"a"') < text.index('"b"')
    assert '{"ndarray":"float64","shape":[1],"data":["0x1p-1"]}' in text


def test_case_inputs_are_exactly_the_protocol_arguments():
    import inspect

    from conformance.backend import Backend
    for path in golden.family_files():
        for case in golden.load(path).cases:
            params = inspect.signature(getattr(Backend, case.op)).parameters
            keyword = {n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
            assert set(case.inputs) == keyword, (case.id, case.op)


def test_every_operation_is_documented():
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "docs" / "conformance.md").read_text()
    for op in OPERATIONS:
        assert f"`{op}`" in text, op
