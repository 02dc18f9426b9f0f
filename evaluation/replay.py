"""The served pipeline replayed offline as of a cut: an evaluation home holding only the
cut's training log, built through the real path (Spark jobs → `feast apply` → materialisation
into Redis → two-tower, teacher and student trained and published), then answered through
`serving.core.Core` — the object `Recommend` calls — one request per user.

Each cut gets its own home under `<home>/eval/pipeline/<split>-<cut>/` and its own Feast
project (`vitrine_eval_<split>_<cut>`), so its registry and Redis keys never touch the
home's or another cut's. Nothing after the cut is on disk in that home: its event log is
written from the cut's training rows only (the test in tests/integration proves it).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

import pyarrow as pa

from evaluation.split import Cut
from vitrine.config import Home
from vitrine.policy import Policy


@contextmanager
def feast_project(name: str) -> Iterator[None]:
    """Run Feast (and serving's Redis reads) against project `name`, then restore."""
    from vitrine.featurestore.repo import PROJECT_ENV

    before = os.environ.get(PROJECT_ENV)
    os.environ[PROJECT_ENV] = name
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(PROJECT_ENV, None)
        else:
            os.environ[PROJECT_ENV] = before


def project_for(cut: Cut) -> str:
    return f"vitrine_eval_{cut.split}_{cut.name}"


def cut_home(home: Home, cut: Cut) -> Home:
    return Home(home.evaluations / "pipeline" / f"{cut.split}-{cut.name}")


def write_cut_log(home: Home, cut: Cut, table: pa.Table) -> Home:
    """A fresh evaluation home whose event log is the cut's training rows (by `_row`) and
    whose catalogues link to the home's."""
    from vitrine.data.eventlog import EventLog

    sub = cut_home(home, cut)
    shutil.rmtree(sub.root, ignore_errors=True)
    sub.root.mkdir(parents=True)
    rows = pa.array(cut.events["_row"].to_numpy())
    written, _ = EventLog(sub.events).append(table.take(rows), f"{cut.split}-{cut.name}")
    if written != len(rows):
        raise RuntimeError(f"{cut.name} cut: wrote {written:,} of {len(rows):,} training events")
    sub.catalog.symlink_to(home.catalog, target_is_directory=True)
    return sub


@dataclass(frozen=True)
class BuildSettings:
    two_tower_epochs: int | None = None  # None: the model's default
    rankers: bool = True  # train the teacher and the student (the + coarse / + fine stages)
    ranker_epochs: int | None = None
    student_epochs: int | None = None
    # share of the training days' samples the rankers train on: Feast's point-in-time join of a
    # long look-back's samples needs ~20 GB at 100%, over the 2-core, 24 GB machine (OOM seen on
    # MovieLens' 160-day test cut); the validation and test days are always joined in full
    ranker_fraction: float = 0.25
    negatives: str = "auto"  # training.ranking.negatives.SOURCES


def build(home: Home, cut: Cut, table: pa.Table, redis_url: str, settings: BuildSettings = BuildSettings(),
          spark_settings=None, log: Callable[[str], None] = print) -> Home:
    """Everything serving needs, as of the cut, in the cut's own home and Feast project."""
    from spark_jobs.run import run_features
    from spark_jobs.session import spark_session
    from training.ranking.fm_student import FMSettings
    from training.ranking.mmoe import MMoESettings
    from training.ranking.negatives import NegativeSettings
    from training.ranking.pipeline import train_ranking
    from training.retrieval.pipeline import train_retrieval
    from training.retrieval.two_tower import TwoTowerSettings
    from vitrine.featurestore.materialize import materialize
    from vitrine.featurestore.realtime import ensure_table
    from vitrine.featurestore.repo import run_feast

    t = time.perf_counter()
    sub = write_cut_log(home, cut, table)
    run = run_features(sub, spark_session(spark_settings))
    log(f"   · Spark features as of {run.as_of[:19]} ({len(run.snapshots)} snapshots, "
        f"{run.lookback_days}-day look-back) {run.seconds:.0f}s")
    ensure_table(sub)
    with feast_project(project_for(cut)):
        run_feast(sub, redis_url, ["apply"], capture=True)
        m = materialize(sub, redis_url, full=True)
        log(f"   · feast apply + materialised {sum(v.rows for v in m.views.values()):,} rows into Redis "
            f"({m.seconds:.0f}s)")
        tt = TwoTowerSettings() if settings.two_tower_epochs is None else TwoTowerSettings(
            epochs=settings.two_tower_epochs)
        trained = train_retrieval(sub, redis_url, settings=tt)
        log(f"   · two-tower on {trained.manifest['metrics']['positives']:,} positives")
        if settings.rankers:
            teacher = MMoESettings() if settings.ranker_epochs is None else MMoESettings(
                epochs=settings.ranker_epochs)
            student = FMSettings() if settings.student_epochs is None else FMSettings(
                epochs=settings.student_epochs)
            ranked = train_ranking(sub, redis_url, teacher=teacher, student=student, fraction=settings.ranker_fraction,
                                   negatives=NegativeSettings(source=settings.negatives), log=lambda m: None)
            ctr = ranked.teacher_manifest["metrics"]["test"]["ctr"]["auc"]
            log(f"   · teacher + student trained on {ranked.teacher_manifest['dataset']['negatives']} negatives "
                f"(teacher CTR AUC {ctr:.4f} on the cut's last day)")
    log(f"   built the {cut.name} cut in {time.perf_counter() - t:.0f}s")
    return sub


class Replay:
    """`Core` on a cut's home: answers for any user under any policy, timed per request."""

    def __init__(self, sub: Home, cut: Cut, redis_url: str) -> None:
        from serving.config import Budgets, ServingConfig, Strategy
        from serving.core import Core

        self.cut, self.project = cut, project_for(cut)
        # one arm that runs every stage the policy leaves on; budgets and a Redis timeout that a
        # loaded machine cannot miss (an offline replay measures answers; latency is reported)
        # (and no exposure log: replayed answers are not shown to anyone)
        config = ServingConfig(http_port=None, budgets=Budgets(*[60_000.0] * 6), max_exclude=100_000,
                               redis_timeout_s=5.0, strategies=(Strategy("replay", 100, coarse=True, fine=True),),
                               exposures=False, consumers=False)
        with feast_project(self.project):
            self.core = Core(sub, config, redis_url=redis_url)
        self.base = self.core.models.current
        self.request_unix_s = int(cut.end.timestamp()) + 1

    @property
    def catalogue(self):
        return self.base.retriever.catalogue

    @property
    def routes(self) -> list[str]:
        return list(self.base.retriever.routes)

    def answer(self, users: Sequence[str], policy: Policy, k: int, exclude: dict[str, Sequence[str]]
               ) -> tuple[dict[str, list[str]], list[float], int]:
        """(user → item ids, per-request milliseconds, degraded answers) under `policy`."""
        from serving.api import RecommendRequest

        self.core.models.current = replace(self.base, policy=policy)
        lists: dict[str, list[str]] = {}
        ms: list[float] = []
        degraded = 0
        with feast_project(self.project):
            for user in users:
                req = RecommendRequest(user_id=user, k=k, exclude=frozenset(exclude.get(user, ())),
                                       request_unix_s=self.request_unix_s, request_id=f"eval-{user}")
                t = time.perf_counter()
                rec = self.core.recommend(req)
                ms.append((time.perf_counter() - t) * 1000)
                degraded += rec.degraded
                lists[user] = [i.item_id for i in rec.items]
        self.core.models.current = self.base
        return lists, ms, degraded

    def route_coverage(self, users: Sequence[str], exclude: dict[str, Sequence[str]]) -> dict[str, dict]:
        """Per recall route: the share of `users` it returns anything for, and the distinct items
        it returns (top 50 each) — a route silently empty for most users shows here."""
        retriever = self.base.retriever
        read = self.core.reader.read
        found = {name: 0 for name in retriever.routes}
        items: dict[str, set] = {name: set() for name in retriever.routes}
        with feast_project(self.project):
            for user in users:
                values = read(user).values
                state = retriever.user_state(user, values)
                for name in retriever.routes:
                    got = retriever.single_route(name).recall(state, 50, exclude=list(exclude.get(user, ())))
                    if got:
                        found[name] += 1
                        items[name].update(c.row for c in got)
        n = max(len(users), 1)
        return {name: {"users": found[name] / n, "items": len(items[name])} for name in retriever.routes}

    def close(self) -> None:
        self.core.close()
