"""Where the feature tables live: `<home>/features/<table>`, the home being `$VITRINE_HOME`
(as for every `vitrine` command). Run Feast through `vitrine feast ...`, which sets it."""

from __future__ import annotations

from datetime import timedelta

from vitrine.config import Home

HOME = Home.resolve()

# daily snapshot tables: a row older than this is not joined (a user whose activity has left
# the 30-day window stops getting rows; without a TTL the last, stale row would be joined)
SNAPSHOT_TTL = timedelta(hours=36)
# versioned catalogue tables (profile, attributes): a version is valid until the next one
VERSIONED_TTL = timedelta(0)
REALTIME_TTL = timedelta(days=2)


def table_path(name: str) -> str:
    return str(HOME.features / name)
