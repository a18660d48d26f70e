"""One hypothesis profile for every property-based test: derandomized (CI sees the
same examples every run), no deadline (a shared 2-core machine), few examples."""

from hypothesis import HealthCheck, settings

settings.register_profile("collscale", derandomize=True, deadline=None, max_examples=150,
                          suppress_health_check=[HealthCheck.too_slow], database=None)
settings.load_profile("collscale")
