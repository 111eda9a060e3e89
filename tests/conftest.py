import os
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, settings

# Every property runs at least 1,000 examples in CI (and by default); HYPOTHESIS_PROFILE=quick
# is for a developer's inner loop only.
settings.register_profile(
    "ci", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("quick", max_examples=50, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

T0 = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)


@pytest.fixture
def t0() -> datetime:
    return T0
