"""Golden files: they regenerate within their portability guarantee on every BLAS kernel and
thread count, pass the lint, match the manifest, round-trip exactly, and their tolerances bite."""

import json
import math
import os
import platform
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conformance import accuracy, golden
from conformance.backend import OPERATIONS, ReferenceBackend, provides
from conformance.compare import compare, outside
from conformance.families import load_families
from conformance.generate import generate


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    out = tmp_path_factory.mktemp("golden")
    generate(out)
    return out


def test_regeneration_matches_the_committed_files(regenerated):
    """Byte-identical families give the same bytes; bounded ones stay within their bounds."""
    problems = accuracy.regeneration_problems(golden.GOLDEN_DIR, regenerated)
    assert problems == [], (
        "run `python -m conformance generate` and commit the result:\n" + "\n".join(problems[:20])
    )


# ------------------------------------------------------------ other BLAS kernels and threads
# Each variant regenerates the files in a subprocess with the machine's environment plus
# the variant's settings (the test process's own OPENBLAS_* settings are never changed).
CHILD = r"""
import ctypes, json, sys
import numpy
from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
from conformance.generate import generate

def openblas():
    libs = sorted({line.split()[-1] for line in open("/proc/self/maps")
                   if "openblas" in line.lower() and line.split()[-1].startswith("/")})
    for path in libs:
        lib = ctypes.CDLL(path)
        for prefix, suffix in (("scipy_openblas", "64_"), ("openblas", "64_"), ("openblas", "")):
            name = getattr(lib, f"{prefix}_get_corename{suffix}", None)
            threads = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            if name is not None and threads is not None:
                name.restype = ctypes.c_char_p
                return {"corename": name().decode(), "threads": threads()}
    return None

generate(sys.argv[1])
print(json.dumps({"openblas": openblas(),
                  "numpy_dispatch": [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]}))
"""


# Names OpenBLAS reports for a forced kernel (its Prescott kernels are filed under Katmai).
CORENAMES = {"prescott": ("prescott", "katmai")}


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {
        f
        for line in text.splitlines()
        if line.startswith(("flags", "Features"))
        for f in line.split(":", 1)[1].split()
    }


def openblas_coretypes() -> list[str]:
    """The OpenBLAS kernels (OPENBLAS_CORETYPE) this CPU can run, oldest first."""
    machine, flags = platform.machine().lower(), _cpu_flags()
    if machine in ("x86_64", "amd64"):
        out = ["Prescott"]
        if "avx" in flags:
            out.append("Sandybridge")
        if {"avx2", "fma"} <= flags:
            out.append("Haswell")
        if {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"} <= flags:
            out.append("SkylakeX")
        return out
    if machine in ("aarch64", "arm64"):
        out = ["ARMV8"]
        if "sve" in flags:
            out.append("NEOVERSEV1")
        return out
    return []


def _numpy_dispatch() -> list[str]:
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    return [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]


def _variants() -> list[tuple[str, dict[str, str]]]:
    out = [
        (
            f"{core}, {threads} thread{'s' if threads > 1 else ''}",
            {"OPENBLAS_CORETYPE": core, "OPENBLAS_NUM_THREADS": str(threads)},
        )
        for core in openblas_coretypes()
        for threads in (1, 2)
    ]
    if _numpy_dispatch():
        out.append(
            (
                "NumPy's SIMD loops at the baseline only",
                {"NPY_DISABLE_CPU_FEATURES": " ".join(_numpy_dispatch())},
            )
        )
    return out


@pytest.fixture(scope="module")
def other_machines(tmp_path_factory):
    """Regenerate the golden files once per variant, two subprocesses at a time."""
    if not sys.platform.startswith("linux") or not openblas_coretypes():
        pytest.skip(
            "OpenBLAS kernels are selected by OPENBLAS_CORETYPE only on Linux x86-64 and "
            "aarch64 here"
        )
    root = tmp_path_factory.mktemp("machines")

    def run(item):
        i, (name, settings) = item
        out = root / f"v{i}"
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(out)],
            env={**os.environ, **settings},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        return name, settings, out, proc

    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(run, enumerate(_variants())))


@pytest.mark.parametrize("index", range(len(_variants())), ids=[v[0] for v in _variants()])
def test_regeneration_is_portable(other_machines, index):
    """Every kernel the CPU runs, 1 and 2 BLAS threads, NumPy's narrowest SIMD: within bounds."""
    name, settings, out, proc = other_machines[index]
    assert proc.returncode == 0, f"{name}: generation failed\n{proc.stderr[-3000:]}"
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    if "OPENBLAS_CORETYPE" in settings:
        if info["openblas"] is None:
            pytest.skip("NumPy is not linked against OpenBLAS: no kernel to choose")
        wanted = settings["OPENBLAS_CORETYPE"].lower()
        assert info["openblas"]["corename"].lower() in CORENAMES.get(wanted, (wanted,)), info
        assert info["openblas"]["threads"] == int(settings["OPENBLAS_NUM_THREADS"]), info
    else:
        assert info["numpy_dispatch"] == [], info
    problems = accuracy.regeneration_problems(golden.GOLDEN_DIR, out)
    assert problems == [], f"{name}:\n" + "\n".join(problems[:20])


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_the_regeneration_check_refuses_what_its_bounds_do_not_allow(tmp_path):
    base = golden.GOLDEN_DIR

    def problems(change, family):
        fresh = _copy(base, tmp_path / f"{family}-{len(list(tmp_path.iterdir()))}")
        _edit(fresh / f"{family}.json", change)
        return "\n".join(accuracy.regeneration_problems(base, fresh))

    def first(data, op):
        return next(c for c in data["cases"] if c["op"] == op)

    def nudge(units):
        def change(data):
            case = first(data, "hessian_diag")
            leaf = next(iter(case["expected"]["diag"].values()))
            scale = next(iter(case["tolerance"]["diag"]["scale"].values()))
            x, s = float.fromhex(leaf["data"][0]), float.fromhex(scale["data"][0])
            leaf["data"][0] = (x + units * accuracy.EPS * s).hex()

        return change

    bound = accuracy.machine_variation("curvature")
    assert problems(nudge(bound / 2), "curvature") == ""
    assert "moved" in problems(nudge(bound * 4), "curvature")

    def flip_mask(data):
        case = first(data, "imp")
        mask = next(iter(case["expected"]["trace"]["masks"][-1].values()))
        mask["data"] = ("0" if mask["data"][0] == "1" else "1") + mask["data"][1:]

    assert "discrete part differs" in problems(flip_mask, "lottery")

    def touch_masks(data):
        first(data, "keep_top_k")["comment"] += "."

    assert "must be byte-identical" in problems(touch_masks, "masks")

    def move_margin(data):
        m = first(data, "imp")["margin"]
        m["relative_gap"]["float64"] = (float.fromhex(m["relative_gap"]["float64"]) * 1.5).hex()

    assert "margin moved" in problems(move_margin, "lottery")


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
    profiles = {
        f for c in cases if c.op == "profile_mask" for f in c.flags if f.startswith("profile:")
    }
    assert profiles == {
        "profile:reference",
        "profile:torch",
        "profile:tfmot",
        "profile:open-lth",
        "profile:shrinkbench",
    }
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
    assert total < 1_250_000, f"golden files total {total} bytes"


def test_lint_reports_each_kind_of_problem(tmp_path):
    path = golden.family_files()[0]
    data = json.loads(path.read_text())
    data["cases"][1]["id"] = data["cases"][0]["id"]  # duplicate id
    data["cases"][2]["flags"] = sorted(data["cases"][2]["flags"] + ["undefined-flag"])
    data["number_of_cases"] += 1
    data["cases"][3]["inputs"]["bare"] = 0.5  # a float that is not hex
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
EDGE = [
    0.0,
    -0.0,
    5e-324,
    -5e-324,
    2.2250738585072014e-308,
    1.7976931348623157e308,
    0.1,
    -1 / 3,
    1.0,
]


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


@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
        elements=st.floats(allow_nan=False),
    )
)
def test_float_arrays_round_trip_bit_for_bit(a):
    back = golden.decode(json.loads(json.dumps(golden.encode(a))))
    assert back.shape == a.shape and back.dtype == np.float64
    assert np.array_equal(back.view(np.uint64), a.view(np.uint64))


@given(
    hnp.arrays(np.bool_, hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4)),
    hnp.arrays(np.int64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=4)),
)
def test_bool_and_int_arrays_round_trip(b, i):
    assert (
        np.array_equal(golden.decode(golden.encode(b)), b)
        and golden.decode(golden.encode(b)).dtype == bool
    )
    assert (
        np.array_equal(golden.decode(golden.encode(i)), i)
        and golden.decode(golden.encode(i)).dtype == np.int64
    )


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


# ----------------------------------------------------------------------------- tolerances bite
def _cases():
    return [(p.stem, c) for p in golden.family_files() for c in golden.load(p).cases]


def _entry_tolerance(tol: dict, scale) -> np.ndarray:
    """R * s for a 'close' output, 0 for an exact one."""
    return tol["rel"] * np.asarray(scale, dtype=np.float64) if tol["kind"] == "close" else 0.0


def _shift(value, tol, step):
    """``value`` with every float leaf x moved to step(x, allowed) (allowed = R * s or 0)."""
    scale = tol.get("scale") if tol["kind"] == "close" else None

    def leaf(path, x):
        s = accuracy._at(scale, path) if scale is not None else np.zeros(np.shape(x))
        moved = step(
            np.asarray(x, dtype=np.float64), np.broadcast_to(_entry_tolerance(tol, s), np.shape(x))
        )
        return float(moved) if isinstance(x, float) else moved

    def walk(v, m):
        if isinstance(v, dict):
            return {k: walk(v[k], m[k]) for k in v}
        if isinstance(v, list):
            return [walk(x, y) for x, y in zip(v, m)]
        return v if m is None else m

    return walk(value, accuracy.mirror(value, leaf))


def _ten_times(x, allowed):
    """10x the tolerance away from x; one ulp away where nothing is allowed."""
    return np.where(
        allowed > 0,
        x + 10 * allowed * np.where(x < 0, -1.0, 1.0),
        np.nextafter(x, np.where(x < 0, -np.inf, np.inf)),
    )


def _machine_move(x, allowed, tol, units):
    """x moved by ``units`` units of its scale (a zero with scale 0 keeps its sign)."""
    delta = units * accuracy.EPS * (allowed / tol["rel"] if tol["kind"] == "close" else 0.0)
    return np.where(delta == 0, x, x + delta)


@pytest.mark.parametrize("family", sorted(accuracy.PORTABILITY))
def test_every_golden_float_fails_at_10x_its_tolerance_and_passes_at_machine_variation(family):
    checked = 0
    units = accuracy.machine_variation(family)
    for fam, case in _cases():
        if fam != family:
            continue
        for out, expected in case.expected.items():
            tol = case.tolerance[out]
            leaves = accuracy.float_leaves(expected)
            if not leaves:
                continue
            far = _shift(expected, tol, _ten_times)
            assert compare(expected, far, tol, inputs=case.inputs) is not None, case.id
            scale = tol.get("scale") if tol["kind"] == "close" else None
            for path, e in leaves:
                s = None if scale is None else np.asarray(accuracy._at(scale, path))
                x = np.asarray(accuracy._at(far, path))
                assert outside(np.asarray(e), x, tol, s).all(), (case.id, path)
                checked += np.size(e)
            near = _shift(
                expected, tol, lambda x, allowed, tol=tol: _machine_move(x, allowed, tol, units)
            )
            assert compare(expected, near, tol, inputs=case.inputs) is None, case.id
    assert checked > 0 or family in ("masks", "profiles"), "no float checked"


def test_no_float_output_can_be_answered_with_zeros():
    for _, case in _cases():
        for out, expected in case.expected.items():
            leaves = accuracy.float_leaves(expected)
            if not leaves or all(not np.any(e) for _, e in leaves):
                continue
            zeros = _shift(expected, case.tolerance[out], lambda x, allowed: np.zeros_like(x))
            assert compare(expected, zeros, case.tolerance[out], inputs=case.inputs), case.id


def test_tiny_outputs_have_tiny_tolerances():
    """An output far below 1 (curvature case 99: entries ~1e-54) is held to its own scale."""
    tiny = 0
    for _, case in _cases():
        for out, expected in case.expected.items():
            tol = case.tolerance[out]
            if tol["kind"] != "close":
                continue
            for path, e in accuracy.float_leaves(expected):
                e, s = np.abs(np.asarray(e)), np.asarray(accuracy._at(tol["scale"], path))
                assert np.all(s >= e), (case.id, path)
                small = (e > 0) & (e < 1e-30)
                tiny += int(small.sum())
                assert np.all(tol["rel"] * s[small] < e[small]), (case.id, path)
    assert tiny > 0, "no golden float below 1e-30 to check"


def test_signed_zeros_are_compared_where_promised():
    flagged = 0
    for _, case in _cases():
        for out, expected in case.expected.items():
            tol = case.tolerance[out]
            if not tol.get("signed_zeros"):
                continue
            assert "signed-zeros" in case.flags, case.id
            flipped = _shift(expected, tol, lambda x, allowed: np.where(x == 0, -x, x))
            if any(np.any(np.asarray(e) == 0) for _, e in accuracy.float_leaves(expected)):
                assert compare(expected, flipped, tol, inputs=case.inputs), case.id
                flagged += 1
    assert flagged > 0


def test_tolerances_are_derived_from_the_bound_table():
    for _, case in _cases():
        for tol in case.tolerance.values():
            if tol["kind"] == "close":
                assert tol["rel"] == accuracy.tolerance_rel(case.op, case.inputs), case.id
                units = tol["rel"] / accuracy.EPS
                assert units >= 2 * accuracy.bound(case.op, case.inputs)
                assert units >= accuracy.TOLERANCE_OVER_VARIATION * accuracy.machine_variation(
                    case.family
                )


# ----------------------------------------------------------------------------- margins
def test_every_decision_records_its_margin():
    decided = {
        "fraction_to_count",
        "keep_top_k",
        "select_masks",
        "prune_units",
        "n_m_mask",
        "profile_mask",
        "obs_prune",
        "synflow_prune",
        "schedule",
        "rounds_to_density",
        "hard_threshold",
        "soft_threshold",
        "hard_threshold_prox",
        "sparse_approx_exact",
        "ista",
        "iht",
        "imp_round",
        "imp",
    }
    seen = set()
    for _, case in _cases():
        margin = case.raw["margin"]
        if case.op not in decided:
            assert margin is None, case.id
        elif margin is not None:
            seen.add(case.op)
            assert margin["quantity"] in ("exact", "computed")
    assert seen == decided


def test_margin_helpers():
    from conformance import margins

    assert margins.gap(1.0, 1.0) == 0.0 and margins.gap(0.0, 0.0) == 0.0
    assert margins.gap(2.0, 1.0) == 0.5
    assert margins.selection_gap(np.array([3.0, 1.0, 2.0]), np.array([True, False, True])) == 0.5
    assert margins.selection_gap(np.array([1.0, 2.0]), np.array([True, True])) is None
    with pytest.raises(ValueError, match="outranks"):
        margins.selection_gap(np.array([1.0, 2.0]), np.array([True, False]))
    alive = np.array([True, False, True])  # a dead entry takes no part
    assert (
        margins.selection_gap(np.array([3.0, 9.0, 1.0]), np.array([True, False, False]), alive)
        == 2.0 / 3.0
    )
    assert margins.rounding_gap(3.5, "round-half-even") == 0.0  # on the boundary
    assert margins.rounding_gap(5.0, "floor") == 0.0
    assert margins.rounding_gap(3.25, "round-half-even") == 0.25 / 3.5
    assert margins.exactly_summed(np.array([1.0, -2.0, 0.5]))
    assert not margins.exactly_summed(np.array([0.1, 0.2]))
    assert not margins.exactly_summed(np.array([1.0, 2.0**-60]))
    assert margins.exactly_squared(np.array([1.5, 3.0])) and not margins.exactly_squared([0.1])
    assert margins.record(exact=[0.0], computed=[0.5, None]) == {
        "relative_gap": 0.5,
        "quantity": "computed",
    }
    assert margins.record(exact=[None]) is None


def test_the_lint_refuses_a_computed_decision_near_a_tie(tmp_path):
    path = golden.GOLDEN_DIR / "lottery.json"
    data = json.loads(path.read_text())
    case = next(c for c in data["cases"] if c["op"] == "imp")
    case["margin"]["relative_gap"] = golden.encode(1e-9)
    bad = tmp_path / "lottery.json"
    bad.write_text(json.dumps(data))
    assert any("relative gap" in p for p in golden.lint(bad, OPERATIONS))
    case["flags"] = sorted(case["flags"] + ["ties"])
    data["notes"]["ties"] = "an intended tie"
    case["tolerance"]["trace"]["alternatives"] = [case["expected"]["trace"]]
    bad.write_text(json.dumps(data))
    assert not any("relative gap" in p for p in golden.lint(bad, OPERATIONS))


def test_the_lint_checks_tolerance_scales(tmp_path):
    path = golden.GOLDEN_DIR / "curvature.json"
    data = json.loads(path.read_text())
    tol = next(c for c in data["cases"] if c["op"] == "gradient")["tolerance"]["gradient"]
    first = next(iter(tol["scale"]))
    tol["scale"][first]["shape"] = [1, 1]
    tol["rel"] = golden.encode(3e-13)
    bad = tmp_path / "curvature.json"
    bad.write_text(json.dumps(data))
    problems = "\n".join(golden.lint(bad, OPERATIONS))
    assert "power of two" in problems and "of its shape" in problems


# ----------------------------------------------------------------------------- JSON Schema
def test_every_file_is_valid_under_the_json_schema():
    import jsonschema  # in the test extra: the lint needs it to check the schema

    schema = json.loads((golden.GOLDEN_DIR / golden.SCHEMA).read_text())
    assert schema == golden.json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in golden.family_files():
        errors = list(validator.iter_errors(json.loads(path.read_text())))
        assert errors == [], (path.name, errors[0].message[:300] if errors else "")


def test_the_json_schema_refuses_malformed_files():
    data = json.loads((golden.GOLDEN_DIR / "sparse_approx.json").read_text())
    case = data["cases"][0]
    case["inputs"]["bare"] = 0.5  # a float that is not hex
    del case["margin"]
    case["tolerance"][next(iter(case["tolerance"]))]["kind"] = "roughly"
    data["cases"][1]["expected"] = {"u": {"ndarray": "float64", "shape": [1], "data": ["1.5"]}}
    text = "\n".join(golden.schema_problems("sparse_approx.json", data))
    assert "/cases/0/inputs/bare" in text and "'margin' is a required property" in text
    assert "/cases/0/tolerance" in text and "/cases/1/expected/u" in text
