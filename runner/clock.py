"""Moments as the report and the logs write them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime


def iso_time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def documents_moment(now: datetime, environ: Mapping[str, str]) -> datetime:
    """When the decks say they were made: `now` (the run's start, so every deck of a run says the
    same), or SOURCE_DATE_EPOCH where it is set, the reproducible-builds convention for making the
    same documents from the same inputs byte for byte."""
    epoch = environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch.isdigit():
        return datetime.fromtimestamp(int(epoch), UTC)
    return now.astimezone(UTC)
