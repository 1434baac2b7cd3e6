"""Reading the golden files as plain JSON (docs/golden_format.md), without the conformance code.

Values decode to: int, str, bool, None; ``float`` for a float64 scalar; ``Array``
for an ndarray (flat C-order ``data``: floats, ints or bools); dicts and lists.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).resolve().parents[2] / "conformance" / "golden"


@dataclass
class Array:
    dtype: str
    shape: tuple[int, ...]
    data: list

    @property
    def size(self) -> int:
        return len(self.data)


def decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "float64" in value:
            return float.fromhex(value["float64"])
        if "ndarray" in value:
            dtype, shape, data = value["ndarray"], tuple(value["shape"]), value["data"]
            if dtype == "float64":
                data = [float.fromhex(x) for x in data]
            elif dtype == "bool":
                data = [c == "1" for c in data]
            else:
                data = [int(x) for x in data]
            return Array(dtype, shape, data)
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


@dataclass
class Case:
    family: str
    id: int
    op: str
    comment: str
    flags: list[str]
    inputs: dict[str, Any]
    expected: dict[str, Any]
    tolerance: dict[str, Any] | None = None


def load(family: str, directory: Path = GOLDEN) -> list[Case]:
    doc = json.loads((directory / f"{family}.json").read_text())
    return [
        Case(
            family,
            c["id"],
            c["op"],
            c["comment"],
            c["flags"],
            decode(c["inputs"]),
            decode(c["expected"]),
            decode(c.get("tolerance")),
        )
        for c in doc["cases"]
    ]


def rows(a: Array) -> list[list]:
    """A 2-D array as a list of rows."""
    n, m = a.shape
    return [a.data[i * m : (i + 1) * m] for i in range(n)]


def all_cases(families: list[str], directory: Path = GOLDEN) -> Iterator[Case]:
    for family in families:
        yield from load(family, directory)
