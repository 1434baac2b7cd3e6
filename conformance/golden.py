"""Golden files: the language-neutral JSON encoding, deterministic writing, ids, manifest and lint.

The format is specified in ``docs/golden_format.md``; this module is its
reference reader and writer. In short: one JSON file per family under
``conformance/golden/``, floats as C99 hexadecimal strings (``float.hex``), so
every value round-trips bit for bit in any language; every case has a stable
integer id kept in ``ids.txt``; ``MANIFEST.txt`` lists the SHA-256 of each file
in the format of ``sha256sum``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 2
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
MANIFEST = "MANIFEST.txt"
IDS = "ids.txt"
SCHEMA = "schema.json"
VALUE_KEYS = ("float64", "ndarray")  # a JSON object with one of these keys is a typed value
DTYPES = ("float64", "int64", "bool")
TOLERANCE_KINDS = ("exact", "close")
FLAG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*(:[a-z0-9-]+)?$")


# --------------------------------------------------------------------------- values
def hexfloat(x: float | np.floating[Any]) -> str:
    """``float.hex`` with the mantissa's trailing zeros removed: 0.5 -> '0x1p-1', -0.0 -> '-0x0p+0'."""
    text = float(x).hex()
    if "p" not in text:  # inf, -inf, nan
        return text
    mantissa, exponent = text.split("p")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}p{exponent}"


def encode(value: Any) -> Any:
    """A JSON-ready form of ``value`` (see docs/golden_format.md, "Values").

    float -> {"float64": hex}; ndarray -> {"ndarray": dtype, "shape": [...],
    "data": ...} (data flat in C order: hex strings for float64, integers for
    int64, one string of '0'/'1' characters for bool); dict -> object (its keys
    must not be "float64" or "ndarray"); list or tuple -> array; int, str, bool
    and None as themselves.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return {"float64": hexfloat(value)}
    if isinstance(value, np.ndarray):
        shape = [int(s) for s in value.shape]
        flat = value.ravel(order="C")
        if value.dtype == np.bool_:
            data: Any = "".join("1" if b else "0" for b in flat)
            dtype = "bool"
        elif value.dtype.kind in "iu":
            data, dtype = [int(v) for v in flat], "int64"
        elif value.dtype.kind == "f":
            data, dtype = [hexfloat(v) for v in flat.astype(np.float64)], "float64"
        else:
            raise TypeError(f"cannot encode an array of dtype {value.dtype}")
        return {"ndarray": dtype, "shape": shape, "data": data}
    if isinstance(value, dict):
        if any(k in value for k in VALUE_KEYS):
            raise ValueError(
                f"a dict stored in a golden file must not have a key named {VALUE_KEYS}"
            )
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    raise TypeError(f"cannot encode a value of type {type(value).__name__}")


def decode(obj: Any) -> Any:
    """The inverse of ``encode``: arrays come back as new NumPy arrays, floats as float."""
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "float64" in obj:
        return float.fromhex(obj["float64"])
    if "ndarray" not in obj:
        return {k: decode(v) for k, v in obj.items()}
    shape, dtype = tuple(obj["shape"]), obj["ndarray"]
    if dtype == "bool":
        return np.array([c == "1" for c in obj["data"]], dtype=bool).reshape(shape)
    if dtype == "int64":
        return np.array(obj["data"], dtype=np.int64).reshape(shape)
    if dtype == "float64":
        return np.array([float.fromhex(v) for v in obj["data"]], dtype=np.float64).reshape(shape)
    raise ValueError(f"unknown ndarray dtype {dtype!r}")


def _typed(obj: Any) -> bool:
    return isinstance(obj, dict) and any(k in obj for k in VALUE_KEYS)


def _is_leaf(obj: Any) -> bool:
    """Values written on one line: scalars, typed values, and anything short (<= 100 characters)."""
    if not isinstance(obj, (dict, list)) or _typed(obj):
        return True
    return len(json.dumps(obj, ensure_ascii=True, separators=(", ", ": "))) <= 100


def _compact(obj: Any) -> str:
    """One-line JSON: typed values tag first and without spaces, other objects with sorted keys."""
    if _typed(obj):
        keys = ["float64"] if "float64" in obj else ["ndarray", "shape", "data"]
        return (
            "{"
            + ",".join(f"{json.dumps(k)}:{json.dumps(obj[k], separators=(',', ':'))}" for k in keys)
            + "}"
        )
    if isinstance(obj, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {_compact(obj[k])}" for k in sorted(obj)) + "}"
    if isinstance(obj, list):
        return "[" + ", ".join(_compact(v) for v in obj) + "]"
    return json.dumps(obj, ensure_ascii=True)


def dumps(obj: Any, indent: int = 0) -> str:
    """Deterministic JSON text: sorted keys, two-space indent, ASCII only.

    Typed values (arrays, floats) and anything whose one-line form is at most 100
    characters are written on one line (``_compact``).
    """
    if _is_leaf(obj):
        return _compact(obj)
    pad, inner = "  " * indent, "  " * (indent + 1)
    if isinstance(obj, dict):
        items = [
            f"{inner}{json.dumps(k, ensure_ascii=True)}: {dumps(obj[k], indent + 1)}"
            for k in sorted(obj)
        ]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    items = [f"{inner}{dumps(v, indent + 1)}" for v in obj]
    return "[\n" + ",\n".join(items) + "\n" + pad + "]"


# --------------------------------------------------------------------------- files
@dataclass
class Case:
    """One decoded golden case."""

    family: str
    id: int
    op: str
    comment: str
    flags: list[str]
    inputs: dict[str, Any]
    expected: dict[str, Any]
    tolerance: dict[str, dict[str, Any]]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)


@dataclass
class GoldenFile:
    family: str
    header: dict[str, Any]
    cases: list[Case]


def family_files(directory: Path | str = GOLDEN_DIR) -> list[Path]:
    """The family files of a golden directory (every ``*.json`` but ``schema.json``), by name."""
    return sorted(p for p in Path(directory).glob("*.json") if p.name != SCHEMA)


def decode_tolerance(tol: dict[str, Any]) -> dict[str, Any]:
    return {k: decode(v) for k, v in tol.items()}


def load(path: Path | str) -> GoldenFile:
    """Read and decode one family file."""
    data = json.loads(Path(path).read_text(encoding="ascii"))
    family = data["family"]
    cases = [
        Case(
            family=family,
            id=c["id"],
            op=c["op"],
            comment=c["comment"],
            flags=list(c["flags"]),
            inputs=decode(c["inputs"]),
            expected=decode(c["expected"]),
            tolerance={k: decode_tolerance(v) for k, v in c["tolerance"].items()},
            raw=c,
        )
        for c in data["cases"]
    ]
    header = {k: v for k, v in data.items() if k != "cases"}
    return GoldenFile(family, header, cases)


def load_family(family: str, directory: Path | str = GOLDEN_DIR) -> GoldenFile:
    path = Path(directory) / f"{family}.json"
    if not path.exists():
        raise ValueError(f"no golden file for family {family!r} in {directory}")
    return load(path)


def sha256(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def manifest_text(directory: Path | str) -> str:
    """``sha256sum`` lines for every file of the directory except the manifest itself."""
    directory = Path(directory)
    names = sorted(p.name for p in directory.iterdir() if p.is_file() and p.name != MANIFEST)
    return "".join(f"{sha256(directory / n)}  {n}\n" for n in names)


def verify_manifest(directory: Path | str = GOLDEN_DIR) -> list[str]:
    """Problems found when checking the manifest against the files (empty when all agree)."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.exists():
        return [f"{MANIFEST} is missing"]
    problems = []
    listed = {}
    for line in path.read_text(encoding="ascii").splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    present = {p.name for p in directory.iterdir() if p.is_file() and p.name != MANIFEST}
    for name in sorted(present - set(listed)):
        problems.append(f"{name} is not in {MANIFEST}")
    for name, digest in sorted(listed.items()):
        if name not in present:
            problems.append(f"{MANIFEST} lists {name}, which does not exist")
        elif sha256(directory / name) != digest:
            problems.append(f"{name}: SHA-256 differs from {MANIFEST}")
    return problems


# --------------------------------------------------------------------------- ids
def read_ids(directory: Path | str = GOLDEN_DIR) -> dict[str, int]:
    """The id registry: case key -> id (``ids.txt`` lines "id key"; retired ids stay)."""
    path = Path(directory) / IDS
    if not path.exists():
        return {}
    ids = {}
    for line in path.read_text(encoding="ascii").splitlines():
        if line.strip() and not line.startswith("#"):
            number, _, key = line.partition(" ")
            ids[key] = int(number)
    return ids


def ids_text(ids: dict[str, int]) -> str:
    lines = [
        "# Golden case ids: 'id key'. An id is never reused; keys no longer generated stay here.\n"
    ]
    lines += [f"{i} {k}\n" for k, i in sorted(ids.items(), key=lambda kv: kv[1])]
    return "".join(lines)


# --------------------------------------------------------------------------- JSON Schema
HEX_FLOAT = r"^-?0x[0-9a-f](\.[0-9a-f]*[1-9a-f])?p[+-][0-9]+$"


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a family file; written as ``golden/schema.json``.

    It checks the structure and the encoding; what it cannot say (data lengths that match
    shapes, ids unique across files, flags defined in the notes, scales mirroring the
    expected value, margins above the bound) the lint checks on top.
    """
    ref = "#/$defs/"  # alternatives are exclusive, so anyOf (it stops at the first)
    value_kinds = [
        {"type": ["integer", "string", "boolean", "null"]},
        {"type": "array", "items": {"$ref": ref + "value"}},
        {"$ref": ref + "float64"},
        {"$ref": ref + "ndarray"},
        {"$ref": ref + "mapping"},
    ]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://refprune.invalid/conformance/golden/schema.json",
        "title": f"refprune conformance golden file, schema version {SCHEMA_VERSION}",
        "description": "One family's golden cases; docs/golden_format.md is the specification.",
        "type": "object",
        "required": list(REQUIRED_HEADER),
        "additionalProperties": False,
        "properties": {
            "schema_version": {"const": SCHEMA_VERSION},
            "generator_version": {"type": "string"},
            "generator": {"type": "string"},
            "family": {"type": "string", "pattern": "^[a-z_]+$"},
            "algorithm": {"type": "array", "items": {"type": "string"}},
            "notes": {
                "type": "object",
                "propertyNames": {"pattern": FLAG_PATTERN.pattern},
                "additionalProperties": {"type": "string", "minLength": 1},
            },
            "operations": {"type": "object", "additionalProperties": {"type": "string"}},
            "number_of_cases": {"type": "integer", "minimum": 1},
            "cases": {"type": "array", "minItems": 1, "items": {"$ref": ref + "case"}},
        },
        "$defs": {
            "hexfloat": {"type": "string", "pattern": HEX_FLOAT},
            "float64": {
                "type": "object",
                "required": ["float64"],
                "additionalProperties": False,
                "properties": {"float64": {"$ref": ref + "hexfloat"}},
            },
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "ndarray": {
                "type": "object",
                "required": ["ndarray", "shape", "data"],
                "additionalProperties": False,
                "properties": {
                    "ndarray": {"enum": list(DTYPES)},
                    "shape": {"$ref": ref + "shape"},
                    "data": {},
                },  # refined by the anyOf below
                "anyOf": [
                    {
                        "properties": {
                            "ndarray": {"const": "float64"},
                            "data": {"type": "array", "items": {"$ref": ref + "hexfloat"}},
                        }
                    },
                    {
                        "properties": {
                            "ndarray": {"const": "int64"},
                            "data": {"type": "array", "items": {"type": "integer"}},
                        }
                    },
                    {
                        "properties": {
                            "ndarray": {"const": "bool"},
                            "data": {"type": "string", "pattern": "^[01]*$"},
                        }
                    },
                ],
            },
            "mapping": {
                "type": "object",
                "not": {"anyOf": [{"required": ["float64"]}, {"required": ["ndarray"]}]},
                "additionalProperties": {"$ref": ref + "value"},
            },
            "value": {"anyOf": value_kinds},
            "scale": {
                "anyOf": [
                    {"type": "null"},
                    {"$ref": ref + "float64"},
                    {
                        "allOf": [
                            {"$ref": ref + "ndarray"},
                            {"properties": {"ndarray": {"const": "float64"}}},
                        ]
                    },
                    {"type": "array", "items": {"$ref": ref + "scale"}},
                    {
                        "type": "object",
                        "not": {"anyOf": [{"required": ["float64"]}, {"required": ["ndarray"]}]},
                        "additionalProperties": {"$ref": ref + "scale"},
                    },
                ]
            },
            "tolerance": {
                "type": "object",
                "required": ["kind"],
                "additionalProperties": False,
                "properties": {
                    "kind": {"enum": list(TOLERANCE_KINDS)},
                    "rel": {"$ref": ref + "float64"},
                    "scale": {"$ref": ref + "scale"},
                    "signed_zeros": {"const": True},
                    "up_to_ties": {
                        "type": "object",
                        "required": ["scores"],
                        "additionalProperties": False,
                        "properties": {
                            "scores": {"type": "string"},
                            "alive": {"type": "string"},
                            "pooled": {"type": "boolean"},
                        },
                    },
                    "alternatives": {"type": "array", "items": {"$ref": ref + "value"}},
                    "tie_alternatives": {"type": "array", "items": {"$ref": ref + "value"}},
                },
                "anyOf": [
                    {
                        "properties": {"kind": {"const": "exact"}},
                        "not": {"anyOf": [{"required": ["rel"]}, {"required": ["scale"]}]},
                    },
                    {"properties": {"kind": {"const": "close"}}, "required": ["rel", "scale"]},
                ],
            },
            "margin": {
                "anyOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "required": ["relative_gap", "quantity"],
                        "additionalProperties": False,
                        "properties": {
                            "relative_gap": {"$ref": ref + "float64"},
                            "quantity": {"enum": list(MARGIN_QUANTITIES)},
                        },
                    },
                ]
            },
            "case": {
                "type": "object",
                "required": list(REQUIRED_CASE),
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "integer", "minimum": 1},
                    "op": {"type": "string"},
                    "comment": {"type": "string", "pattern": "\\S"},
                    "flags": {
                        "type": "array",
                        "minItems": 1,
                        "uniqueItems": True,
                        "items": {"type": "string", "pattern": FLAG_PATTERN.pattern},
                    },
                    "inputs": {"$ref": ref + "mapping"},
                    "expected": {"$ref": ref + "mapping"},
                    "tolerance": {
                        "type": "object",
                        "additionalProperties": {"$ref": ref + "tolerance"},
                    },
                    "margin": {"$ref": ref + "margin"},
                },
            },
        },
    }


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=True) + "\n"


def schema_problems(path: Path | str, data: Any) -> list[str]:
    """Violations of ``schema.json`` (an empty list when jsonschema is not installed: the
    test suite installs it and requires it)."""
    try:
        import jsonschema
    except ImportError:
        return []
    validator = jsonschema.Draft202012Validator(json_schema())
    out = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))[:10]:
        where = "/".join(str(p) for p in error.absolute_path)
        out.append(f"{Path(path).name}: schema: at /{where}: {error.message[:200]}")
    return out


# --------------------------------------------------------------------------- lint
REQUIRED_HEADER = (
    "schema_version",
    "generator_version",
    "family",
    "algorithm",
    "notes",
    "operations",
    "number_of_cases",
    "cases",
)
REQUIRED_CASE = ("id", "op", "comment", "flags", "inputs", "expected", "tolerance", "margin")
MARGIN_QUANTITIES = ("exact", "computed")


def _check_value(obj: Any, where: str, problems: list[str]) -> None:
    if isinstance(obj, list):
        for i, v in enumerate(obj):
            _check_value(v, f"{where}[{i}]", problems)
        return
    if not isinstance(obj, dict):
        if isinstance(obj, float):
            problems.append(f"{where}: bare JSON number {obj!r} (floats must be hex strings)")
        return
    if "float64" in obj:
        try:
            float.fromhex(obj["float64"])
        except (TypeError, ValueError):
            problems.append(f"{where}: float64 value is not a hex float")
        if len(obj) != 1:
            problems.append(
                f"{where}: a float64 value has extra keys {sorted(set(obj) - {'float64'})}"
            )
        return
    if "ndarray" not in obj:
        for k, v in obj.items():
            _check_value(v, f"{where}.{k}", problems)
        return
    if set(obj) != {"ndarray", "shape", "data"}:
        problems.append(
            f"{where}: an ndarray has the keys ndarray, shape and data, got {sorted(obj)}"
        )
        return
    dtype = obj["ndarray"]
    if dtype not in DTYPES:
        problems.append(f"{where}: unknown dtype {dtype!r}")
        return
    shape = obj["shape"]
    if not isinstance(shape, list) or any(not isinstance(s, int) or s < 0 for s in shape):
        problems.append(f"{where}: shape must be a list of non-negative integers")
        return
    size = math.prod(shape)
    data = obj["data"]
    if len(data) != size:
        problems.append(f"{where}: data has {len(data)} entries, shape {shape} needs {size}")
    if dtype == "bool" and (not isinstance(data, str) or set(data) - {"0", "1"}):
        problems.append(f"{where}: bool data must be a string of 0 and 1")
    if dtype == "int64" and (
        not isinstance(data, list) or any(not isinstance(v, int) for v in data)
    ):
        problems.append(f"{where}: int64 data must be a list of integers")
    if dtype == "float64":
        try:
            [float.fromhex(v) for v in data]
        except (TypeError, ValueError):
            problems.append(f"{where}: float64 data must be hex strings")


def _is_float_value(obj: Any) -> bool:
    return isinstance(obj, dict) and ("float64" in obj or obj.get("ndarray") == "float64")


def _check_scale(scale: Any, expected: Any, where: str, problems: list[str]) -> None:
    """A 'close' tolerance's scale mirrors the expected value: floats for floats, null elsewhere."""
    if _is_float_value(expected):
        if not _is_float_value(scale):
            problems.append(f"{where}: the scale of a float must be a float64 value")
            return
        same_shape = "ndarray" in scale and scale.get("shape") == expected["shape"]
        if "ndarray" in expected and not same_shape:
            problems.append(f"{where}: the scale of an array must be a float64 array of its shape")
            return
        try:
            values = decode(scale)
        except (TypeError, ValueError):
            return  # reported by _check_value
        if not np.all(np.isfinite(values) & (np.asarray(values) >= 0)):
            problems.append(f"{where}: scales must be finite and >= 0")
        return
    if isinstance(expected, dict) and not _typed(expected):
        if not isinstance(scale, dict) or set(scale) != set(expected):
            problems.append(f"{where}: the scale must be a mapping with the expected value's keys")
            return
        for k in expected:
            _check_scale(scale[k], expected[k], f"{where}.{k}", problems)
        return
    if isinstance(expected, list):
        if not isinstance(scale, list) or len(scale) != len(expected):
            problems.append(f"{where}: the scale must be a list of the expected value's length")
            return
        for i, (sv, ev) in enumerate(zip(scale, expected)):
            _check_scale(sv, ev, f"{where}[{i}]", problems)
        return
    if scale is not None:
        problems.append(f"{where}: the scale of a value that is not a float must be null")


def _check_tolerance(
    tol: Any, expected: Any, inputs: dict[str, Any], where: str, problems: list[str]
) -> None:
    if not isinstance(tol, dict):
        problems.append(f"{where}: must be an object")
        return
    kind = tol.get("kind")
    if kind not in TOLERANCE_KINDS:
        problems.append(f"{where}: unknown kind {kind!r}")
        return
    allowed = {"kind", "signed_zeros", "up_to_ties", "alternatives", "tie_alternatives"}
    if kind == "close":
        allowed |= {"rel", "scale"}
        rel = tol.get("rel")
        try:
            r = decode(rel) if isinstance(rel, dict) and "float64" in rel else None
        except (TypeError, ValueError):
            r = None
        if r is None or not (r > 0 and math.frexp(r)[0] == 0.5):
            problems.append(f"{where}: 'close' needs rel, a positive power of two")
        if "scale" not in tol:
            problems.append(f"{where}: 'close' needs a scale")
        else:
            _check_scale(tol["scale"], expected, f"{where} scale", problems)
    extra = sorted(set(tol) - allowed)
    if extra:
        problems.append(f"{where}: unknown keys {extra}")
    if "signed_zeros" in tol and tol["signed_zeros"] is not True:
        problems.append(f"{where}: signed_zeros must be true when present")
    ties = tol.get("up_to_ties")
    if ties is not None and ties.get("scores") not in inputs:
        problems.append(f"{where}: up_to_ties names no input {ties.get('scores')!r}")


def _check_margin(case: dict[str, Any], where: str, problems: list[str]) -> None:
    """null, or {relative_gap, quantity}; a computed decision within MARGIN_BOUND of a tie must
    be an intended tie (flag ``ties``) that lists its acceptable answers."""
    from .accuracy import MARGIN_BOUND

    margin = case["margin"]
    if margin is None:
        return
    if not isinstance(margin, dict) or set(margin) != {"relative_gap", "quantity"}:
        problems.append(f"{where}: margin must be null or have exactly relative_gap and quantity")
        return
    if margin["quantity"] not in MARGIN_QUANTITIES:
        problems.append(f"{where}: margin quantity must be one of {MARGIN_QUANTITIES}")
        return
    try:
        g = decode(margin["relative_gap"])
    except (TypeError, ValueError, KeyError):
        g = None
    if not isinstance(g, float) or not 0.0 <= g <= 2.0:
        problems.append(f"{where}: margin relative_gap must be a float64 in [0, 2]")
        return
    if margin["quantity"] == "computed" and g < MARGIN_BOUND:
        listed = any(
            isinstance(t, dict) and (t.get("alternatives") or t.get("tie_alternatives"))
            for t in case["tolerance"].values()
        )
        if "ties" not in case["flags"] or not listed:
            problems.append(
                f"{where}: a decision on computed values has relative gap {g:.3g} < "
                f"{MARGIN_BOUND:.3g} (rounding could flip it); make the case an "
                "intended tie (flag 'ties', acceptable answers listed) or move it "
                "off the tie"
            )


def lint(path: Path | str, operations: dict[str, Any] | None = None) -> list[str]:
    """Problems in one golden file: schema, unique ids, every flag defined, counts, encodings."""
    path = Path(path)
    problems: list[str] = []
    try:
        raw = path.read_bytes()
        data = json.loads(raw.decode("ascii"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [f"{path.name}: not ASCII JSON ({exc})"]
    problems += schema_problems(path, data)
    for key in REQUIRED_HEADER:
        if key not in data:
            problems.append(f"{path.name}: missing header field {key!r}")
    if any(key not in data for key in REQUIRED_HEADER):
        return problems
    if data["schema_version"] != SCHEMA_VERSION:
        problems.append(f"{path.name}: schema_version {data['schema_version']} != {SCHEMA_VERSION}")
    if data["family"] != path.stem:
        problems.append(f"{path.name}: family {data['family']!r} does not match the file name")
    notes = data["notes"]
    cases = data["cases"]
    if data["number_of_cases"] != len(cases):
        problems.append(
            f"{path.name}: number_of_cases {data['number_of_cases']} != {len(cases)} cases"
        )
    if not cases:
        problems.append(f"{path.name}: no cases")
    for flag in notes:
        if not FLAG_PATTERN.match(flag):
            problems.append(f"{path.name}: flag name {flag!r} is not lower-case-with-dashes")
    seen: set[int] = set()
    used: set[str] = set()
    for c in cases:
        where = f"{path.name} case {c.get('id')}"
        for key in REQUIRED_CASE:
            if key not in c:
                problems.append(f"{where}: missing field {key!r}")
        if any(key not in c for key in REQUIRED_CASE):
            continue
        if not isinstance(c["id"], int) or c["id"] <= 0:
            problems.append(f"{where}: id must be a positive integer")
        elif c["id"] in seen:
            problems.append(f"{where}: duplicate id")
        seen.add(c["id"])
        if operations is not None and c["op"] not in operations:
            problems.append(f"{where}: unknown op {c['op']!r}")
        elif (
            operations is not None
            and hasattr(operations[c["op"]], "output")
            and set(c["expected"]) != {operations[c["op"]].output}
        ):
            problems.append(f"{where}: expected must hold exactly {operations[c['op']].output!r}")
        if c["op"] not in data["operations"]:
            problems.append(f"{where}: op {c['op']!r} is not listed in the header's operations")
        if not isinstance(c["comment"], str) or not c["comment"].strip():
            problems.append(f"{where}: empty comment")
        if not c["flags"]:
            problems.append(f"{where}: no flags")
        if c["flags"] != sorted(set(c["flags"])):
            problems.append(f"{where}: flags must be sorted and distinct")
        for flag in c["flags"]:
            used.add(flag)
            if flag not in notes:
                problems.append(f"{where}: flag {flag!r} is not defined in the notes")
        if set(c["expected"]) != set(c["tolerance"]):
            problems.append(f"{where}: expected and tolerance must name the same outputs")
        for name, tol in c["tolerance"].items():
            _check_tolerance(
                tol,
                c["expected"].get(name),
                c["inputs"],
                f"{where} tolerance of {name!r}",
                problems,
            )
        for part in ("inputs", "expected", "tolerance"):
            _check_value(c[part], f"{where} {part}", problems)
        _check_margin(c, where, problems)
    for flag in sorted(set(notes) - used):
        problems.append(f"{path.name}: flag {flag!r} is defined but no case uses it")
    return problems
