"""Policy shared by every asset, applied once: freshness and the default status of schedules and sensors from the spec."""

from __future__ import annotations

import dagster as dg

from liberation_assets.core.spec import FreshnessSpec, Spec


def freshness_policy(freshness: FreshnessSpec) -> dg.FreshnessPolicy:
    return dg.FreshnessPolicy.time_window(fail_window=freshness.fail_after, warn_window=freshness.warn_after)


def sensor_status(spec: Spec) -> dg.DefaultSensorStatus:
    """Sensors start stopped unless the spec's ``automation.sensors`` says running."""
    return dg.DefaultSensorStatus.RUNNING if spec.automation.sensors == "running" else dg.DefaultSensorStatus.STOPPED


def schedule_status(spec: Spec) -> dg.DefaultScheduleStatus:
    """Schedules start stopped unless the spec's ``automation.schedules`` says running."""
    return (
        dg.DefaultScheduleStatus.RUNNING if spec.automation.schedules == "running" else dg.DefaultScheduleStatus.STOPPED
    )
