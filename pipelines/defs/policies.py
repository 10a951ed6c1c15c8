"""Platform-wide policies shared by every asset."""

from datetime import timedelta

import dagster as dg

# The hourly schedule plus the landing sensor keep every asset well inside this window.
FRESHNESS_POLICY = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=3), warn_window=timedelta(hours=2))
