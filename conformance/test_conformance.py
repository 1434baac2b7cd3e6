"""The conformance suite as pytest tests, one per golden case and per property.

    pytest -p conformance.pytest_plugin --pyargs conformance --backend package.module:object
"""

import pytest

from conformance.pytest_plugin import checks, context, run_check


def pytest_generate_tests(metafunc):
    if "conformance_check" in metafunc.fixturenames:
        found = checks(metafunc.config.getoption("conformance_family", None))
        metafunc.parametrize("conformance_check", found, ids=[c[1] for c in found])


@pytest.fixture(scope="session")
def conformance_context(request):
    return context(request.config)


def test_conformance(conformance_check, conformance_context):
    run_check(conformance_check, conformance_context)
