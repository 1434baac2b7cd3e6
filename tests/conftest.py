import os

from hypothesis import HealthCheck, settings

# CI: derandomised and bounded, so a run is deterministic and its time is known.
settings.register_profile("ci", derandomize=True, max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow], print_blob=True)
# Everywhere else: random exploration with Hypothesis's defaults.
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
