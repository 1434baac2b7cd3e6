"""Registers the conformance options and hooks when pytest is started on this directory
(``pytest conformance``) without the plugin installed."""

from conformance.pytest_plugin import (pytest_addoption, pytest_sessionfinish,  # noqa: F401
                                       pytest_terminal_summary)
