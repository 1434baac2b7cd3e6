"""The kill table: which golden cases, and which properties, each wrong backend fails.

Each wrong backend is checked in this process, on its own family only, and only
by the checks that call an operation it changes (``changed_operations``; the
others see the reference and pass): first by the golden cases alone, then by
the properties alone, at the example count and seed of a CI run, without
shrinking (whether a property fails is what counts, not its smallest example).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from conformance import golden
from conformance.backend import ReferenceBackend
from conformance.families import Family, load_families
from conformance.runner import (
    DEFAULT_MAX_EXAMPLES,
    FAILED,
    _applies,
    _profile,
    claimed_profile,
    open_backend,
    run_case,
    run_property,
)

from .base import WrongBackend, changed_operations


@dataclass
class Kill:
    """What caught one wrong backend."""

    name: str
    family: str
    operations: tuple[str, ...]
    golden: list[str] = field(default_factory=list)  # ids of the failed golden cases
    golden_run: int = 0  # golden cases run
    properties: list[str] = field(default_factory=list)  # names of the failed properties
    properties_run: int = 0
    seconds: float = 0.0

    @property
    def caught(self) -> bool:
        return bool(self.golden) and bool(self.properties)


#: name -> Kill, filled by the tests as they run (the session's end prints it)
KILLS: dict[str, Kill] = {}


class Table:
    """The golden files and families, loaded once for every backend."""

    def __init__(self) -> None:
        self.families: dict[str, Family] = load_families()
        self.cases = {p.stem: golden.load(p).cases for p in golden.family_files()}
        self.reference = ReferenceBackend()

    def kill(
        self,
        name: str,
        cls: type[WrongBackend],
        *,
        max_examples: int = DEFAULT_MAX_EXAMPLES,
        seed: int = 0,
    ) -> Kill:
        start = time.perf_counter()
        ops = changed_operations(cls)
        out = Kill(name, cls.family, ops)
        target = open_backend(cls(), in_process=True)
        profile = _profile(claimed_profile(target, None))
        for case in self.cases.get(cls.family, []):
            if case.op in ops and _applies(case, profile):
                out.golden_run += 1
                if run_case(case, target, profile).status == FAILED:
                    out.golden.append(str(case.id))
        family = self.families[cls.family]
        for prop in family.properties:
            if set(prop.ops) & set(ops):
                out.properties_run += 1
                res = run_property(
                    prop, family, target, self.reference, profile, max_examples, seed, shrink=False
                )
                if res.status == FAILED:
                    out.properties.append(prop.name)
        out.seconds = time.perf_counter() - start
        return out


def format_table(kills: Iterable[Kill], *, markdown: bool = False, width: int = 60) -> str:
    """One row per wrong backend: its family, the golden case ids and the properties that
    catch it ("-" where none does)."""
    rows = sorted(kills, key=lambda k: (k.family, k.name))
    if markdown:
        lines = [
            "| wrong backend | family | golden cases that catch it | properties that catch it |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {k.name} | {k.family} | {_ids(k.golden) or '-'} | "
            f"{', '.join(k.properties) or '-'} |"
            for k in rows
        ]
    else:
        lines = [f"{'wrong backend':<34} {'family':<14} golden cases that catch it / properties"]
        for k in rows:
            ids = _ids(k.golden) or "- (no golden case catches it)"
            if len(ids) > width:
                ids = ids[: width - 5].rsplit(" ", 1)[0] + " ..."
            lines.append(f"{k.name:<34} {k.family:<14} {ids} ({len(k.golden)}/{k.golden_run})")
            lines.append(
                f"{'':<34} {'':<14} {', '.join(k.properties) or '- (no property catches it)'}"
            )
    missed = [k.name for k in rows if not k.caught]
    lines.append(
        f"{len(rows)} wrong backends; caught by golden cases alone: "
        f"{sum(bool(k.golden) for k in rows)}, by properties alone: "
        f"{sum(bool(k.properties) for k in rows)}"
        + (f"; NOT caught by both: {', '.join(missed)}" if missed else "")
    )
    return "\n".join(lines)


def _ids(ids: list[str]) -> str:
    return " ".join(ids)
