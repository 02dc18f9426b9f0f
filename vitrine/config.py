"""Where a Vitrine deployment keeps its state, resolved once at the edge and passed down.

A *home* is one directory holding everything a deployment owns: the event log, the
catalogues, rejects, the managed Redis server's data, features and model versions.
Independent deployments (and tests) use independent homes and never share state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "VITRINE_HOME"
REDIS_URL_ENV = "VITRINE_REDIS_URL"
DEFAULT_HOME = Path("~/.vitrine")


@dataclass(frozen=True)
class Home:
    """The directory layout of one deployment. Paths only; nothing is created here."""

    root: Path

    @classmethod
    def resolve(cls, home: str | os.PathLike[str] | None = None) -> Home:
        """`--home` wins, then `$VITRINE_HOME`, then `~/.vitrine`."""
        raw = home if home is not None else os.environ.get(HOME_ENV) or DEFAULT_HOME
        return cls(Path(raw).expanduser().resolve())

    @property
    def events(self) -> Path:
        """Event log: Parquet partitioned by `date=YYYY-MM-DD`."""
        return self.root / "events"

    @property
    def exposures(self) -> Path:
        """Exposure log (every answer, one row per item shown): Parquet by `date=YYYY-MM-DD`."""
        return self.root / "exposures"

    @property
    def catalog(self) -> Path:
        """Current users/items/merchants tables, plus their version history."""
        return self.root / "catalog"

    @property
    def features(self) -> Path:
        """Feature tables written by the Spark jobs: Feast's offline store (Parquet)."""
        return self.root / "features"

    @property
    def feast(self) -> Path:
        """This home's Feast registry and generated feature_store.yaml."""
        return self.root / "feast"

    @property
    def rejects(self) -> Path:
        return self.root / "rejects"

    @property
    def redis_dir(self) -> Path:
        return self.root / "redis"

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    @property
    def models(self) -> Path:
        """Published model versions: `models/<model>/<version>/` and `models/<model>/LATEST`."""
        return self.root / "models"

    @property
    def datasets(self) -> Path:
        """Cached point-in-time training sets (the rankers' joined rows)."""
        return self.root / "datasets"

    @property
    def training_sets(self) -> Path:
        """Training sets written on request (`vitrine training-set`, the main job's sample)."""
        return self.root / "training_sets"

    @property
    def reports(self) -> Path:
        """Evaluation reports: `reports/<retrieval|ranking|pipeline>/` (Markdown, JSON, plots)."""
        return self.root / "reports"

    @property
    def logs(self) -> Path:
        """Library output of long commands (`logs/<command>.log`)."""
        return self.root / "logs"

    @property
    def evaluations(self) -> Path:
        """Homes built for offline evaluations (`eval/pipeline/<split>-<cut>/`, `eval/retrieval/`)."""
        return self.root / "eval"

    @property
    def real_logs(self) -> Path:
        """Homes of the shipped real public logs the main job evaluates on (`real/<log>/`)."""
        return self.root / "real"

    @property
    def converted(self) -> Path:
        """A public log converted to the ingest contracts (`vitrine convert`'s CSV files)."""
        return self.root / "csv"

    @property
    def synthetic(self) -> Path:
        """Generated platforms (`synthetic/<preset>-seed<seed>/`)."""
        return self.root / "synthetic"

    def ensure(self) -> Home:
        for path in (self.root, self.events, self.catalog, self.rejects):
            path.mkdir(parents=True, exist_ok=True)
        return self


def redis_url_from_env() -> str | None:
    """An external Redis (server or cluster) when `$VITRINE_REDIS_URL` is set."""
    url = os.environ.get(REDIS_URL_ENV, "").strip()
    return url or None
