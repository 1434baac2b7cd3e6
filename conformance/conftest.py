"""Registers the conformance options when pytest is started on this directory (``pytest conformance``)."""

from conformance.pytest_plugin import pytest_addoption  # noqa: F401
