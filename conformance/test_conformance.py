"""The conformance suite as pytest tests, one per golden case and per property.

    pytest -p conformance.pytest_plugin --pyargs conformance \
        --conformance-backend package.module:object
"""

import pytest

from conformance.pytest_plugin import _golden_dir, checks, context, run_check


def pytest_generate_tests(metafunc):
    if "conformance_check" in metafunc.fixturenames:
        config = metafunc.config
        found = checks(config.getoption("conformance_family", None), _golden_dir(config))
        metafunc.parametrize("conformance_check", found, ids=[c[1] for c in found])


@pytest.fixture(scope="session")
def conformance_context(request):
    ctx = context(request.config)
    request.config._conformance_context = ctx
    yield ctx
    ctx["target"].close()


def test_conformance(conformance_check, conformance_context):
    run_check(conformance_check, conformance_context)
