import os

from hypothesis import HealthCheck, settings

# CI: derandomised and bounded, so a run is deterministic and its time is known.
settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
# Everywhere else: random exploration with Hypothesis's defaults.
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def pytest_terminal_summary(terminalreporter):
    """The kill table of the wrong backends, when ``tests/test_wrong_backends.py`` ran: printed,
    and written to the cache directory (``.pytest_cache/d/wrong_backends/kill_table.txt``)."""
    import sys

    table = sys.modules.get("tests.wrong_backends._table")
    if table is None or not table.KILLS:
        return
    text = table.format_table(table.KILLS.values())
    terminalreporter.write_sep("-", "kill table: the checks that catch each wrong backend")
    terminalreporter.write_line(text)
    cache = getattr(terminalreporter.config, "cache", None)
    if cache is not None:
        path = cache.mkdir("wrong_backends") / "kill_table.txt"
        path.write_text(text + "\n", encoding="utf-8")
        terminalreporter.write_line(f"(written to {path})")
