"""The base class of the wrong backends, and what the operations of a class change."""

from __future__ import annotations

from conformance.backend import OPERATIONS, ReferenceBackend


class WrongBackend(ReferenceBackend):
    """The reference with one defect; a subclass says which, and which family must catch it.

    ``family`` names the family of checks that must fail it; a class with an
    empty ``family`` is a base for others and is not in the catalogue. The
    docstring says what is computed wrongly and, in a sentence starting
    "Models", which real-world mistake it models.
    """

    name = "wrong backend"
    family: str = ""


def changed_operations(cls: type) -> tuple[str, ...]:
    """The operations ``cls`` does not inherit unchanged from ``ReferenceBackend``.

    Only these can differ from the reference, so only the checks that call one
    of them can catch the class's defect.
    """
    return tuple(
        op for op in OPERATIONS if getattr(cls, op, None) is not getattr(ReferenceBackend, op, None)
    )
