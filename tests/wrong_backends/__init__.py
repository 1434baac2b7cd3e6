"""Wrong backends: the reference with exactly one realistic defect each.

The conformance suite is only as good as the wrong answers it refuses. Each
class in this package is a small subclass of ``conformance.backend.ReferenceBackend``
that gets one thing wrong, the way real implementations get it wrong, and
``tests/test_wrong_backends.py`` requires every one of them to fail the golden
cases of its family on their own *and* the properties of its family on their
own; it prints the kill table (each defect, the golden cases and the
properties that catch it)::

    python -m tests.wrong_backends            # the kill table, from the repository's root
    python -m conformance run --backend tests.wrong_backends.masks:TiesToHigherIndex --family masks

One module per family (``masks.py``, ``curvature.py``, ...). A class is in the
catalogue when it subclasses ``WrongBackend`` (``tests.wrong_backends.base``),
sets ``family`` and is defined, under a name without a leading underscore, in
a module of this package: adding a module or a class is all it takes.

Where a defect sits inside a computation the reference does in one call (the
count rule inside mask selection, a term inside the Hessian-diagonal
recursion), the class reimplements that computation from refprune's public
functions with a hook, and the hook is the one place it differs: with the hook
left at its default the reimplementation equals the reference (the tests check
this too), so the class has exactly one defect.
"""

from __future__ import annotations

import importlib
import pkgutil
import re

from .base import WrongBackend, changed_operations

__all__ = ["CATALOGUE", "WrongBackend", "catalogue_name", "changed_operations"]


def catalogue_name(cls: type) -> str:
    """The catalogue's key of a class: its name in snake case (``TiesToHigherIndex`` ->
    ``ties_to_higher_index``)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", cls.__name__).lower()


def _collect() -> dict[str, type[WrongBackend]]:
    found: dict[str, type[WrongBackend]] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for attr, cls in vars(module).items():
            if (
                isinstance(cls, type)
                and issubclass(cls, WrongBackend)
                and cls.family
                and cls.__module__ == module.__name__
                and not attr.startswith("_")
            ):
                key = catalogue_name(cls)
                if key in found:
                    raise ValueError(
                        f"two wrong backends are called {key}: "
                        f"{found[key].__module__} and {module.__name__}"
                    )
                found[key] = cls
    return dict(sorted(found.items()))


#: name -> wrong backend class, every module of the package collected
CATALOGUE: dict[str, type[WrongBackend]] = _collect()
