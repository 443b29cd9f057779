"""Moments as the report and the logs write them."""

from __future__ import annotations

from datetime import datetime


def iso_time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
