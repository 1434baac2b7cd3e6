"""Registers the conformance options and hooks when pytest is started on this directory
(``pytest conformance``) without the plugin installed."""

from conformance.pytest_plugin import (  # noqa: F401
    pytest_addoption,
    pytest_sessionfinish,
    pytest_terminal_summary,
)
