"""Ranking training data: the labelled samples joined point in time with the rankers' feature
services (the teacher's, `ranker_v1` by default, and the student's, `coarse_v1`) through
Feast, cached under `<home>/datasets/`, and split by time.

One join serves both models: each field of either service once; each model reads its own
columns (its layout, `ranking/layout.py`, derived from its service in the registry).

Split: the last full day is the test day (with any partial day after it, at the log's
clock edge), the full day before it the validation day, everything earlier trains. `fraction`
samples the training days (default `TRAIN_FRACTION`: all of them — on `demo` the teacher's
CVR head overtakes the click-space CVR-only DNN with all the training rows, not with a quarter;
docs/benchmarks.md "Ranking"); validation and test days are sampled at `eval_fraction`
(default: whole days — purchases are rare, ~0.25 % of impressions, and CVR metrics need all
of them).

Negatives: a log with impressions brings its own (the rows the user was shown and did not
click). Without impressions the rows are conditioned on recall (`training/ranking/negatives.py`):
positives recall proposed, negatives from the rest of the same candidates, so the rankers
learn to order what recall proposes; `negatives=NegativeSettings(source="popularity")` keeps
the Spark job's popularity-drawn negatives and every positive.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ranking.layout import Layout
from training.ranking.negatives import DEFAULT as DEFAULT_NEGATIVES
from training.ranking.negatives import NegativeSettings, logged_parts, recall_samples, resolve_source
from vitrine.config import Home
from vitrine.featurestore.contract import service_fields
from vitrine.featurestore.repo import feature_store
from vitrine.featurestore.training import build_training_set, load_samples
from vitrine.versions import BadModelVersion, latest

TEACHER_SERVICE = "ranker_v1"
STUDENT_SERVICE = "coarse_v1"
# what recall reads about a user: joined onto the positives when recall proposes the negatives
RECALL_SERVICE = "recall_v1"
LABELS = ("label_click", "label_purchase")


@dataclass
class RankingData:
    frame: pd.DataFrame
    path: Path
    key: dict
    split: pd.Series  # "train" | "val" | "test" per row
    layouts: dict[str, Layout]  # service → its layout (from the registry)
    seconds: float = 0.0
    cached: bool = False

    def part(self, name: str) -> pd.DataFrame:
        return self.frame[self.split.to_numpy() == name].reset_index(drop=True)

    @property
    def window(self) -> tuple[str, str]:
        ts = self.frame["event_timestamp"]
        return ts.min().isoformat(), ts.max().isoformat()

    def describe(self) -> dict:
        out = {"path": str(self.path), **self.key}
        for name in ("train", "val", "test"):
            part = self.frame[self.split.to_numpy() == name]
            out[name] = {"rows": len(part), "clicks": int(part["label_click"].sum()),
                         "purchases": int(part["label_purchase"].sum()),
                         "from": part["event_timestamp"].min().isoformat() if len(part) else None,
                         "to": part["event_timestamp"].max().isoformat() if len(part) else None}
        return out


MIN_EVAL_POSITIVES = 2000  # per validation / test part, where the log allows (see day_split)
MAX_EVAL_SHARE = 0.15  # of the positive rows, per part


def day_split(timestamps: pd.Series, positives: pd.Series | None = None, min_share: float = 0.5,
              min_positives: int = MIN_EVAL_POSITIVES, max_share: float = MAX_EVAL_SHARE
              ) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(validation start, test start), on whole days. "Full" days hold at least `min_share` of
    the median day's rows. The test part is the last full day (and any partial day after it),
    the validation part the full day before it — each extended back by whole full days until
    it holds `min_positives` positive rows (`positives`: 1 per positive row), without passing
    `max_share` of all positives. A dense log (the demo: thousands of clicks a day) keeps one
    day each; a sparse one gets a measurable part instead of a day (MovieLens' last day before
    the global cut has 4 users)."""
    days = pd.to_datetime(timestamps, utc=True).dt.floor("D")
    counts = days.value_counts().sort_index()
    full = counts[counts >= min_share * counts.median()].index
    if len(full) < 3:
        raise ValueError(f"need at least 3 full days of samples to split train/validation/test by time, "
                         f"found {len(full)} ({', '.join(str(d.date()) for d in counts.index)})")
    pos = (pd.Series(1, index=days.index) if positives is None else positives.astype(bool).astype(int))
    per_day = pos.groupby(days.to_numpy()).sum()
    cap = max_share * max(int(per_day.sum()), 1)

    def held(first: int, until: pd.Timestamp | None) -> int:
        days_in = (per_day.index >= full[first]) & (per_day.index < until if until is not None else True)
        return int(per_day[days_in].sum())

    def back_from(end: int, until: pd.Timestamp | None, lowest: int) -> int:
        """Index into `full` of the part's first day: from `full[end]` back while short."""
        start = end
        while start > lowest and held(start, until) < min_positives and held(start - 1, until) <= cap:
            start -= 1
        return start

    t = back_from(len(full) - 1, None, lowest=2)  # leaves a validation day and a training day
    v = back_from(t - 1, full[t], lowest=1)
    return full[v], full[t]


def assign_split(timestamps: pd.Series, val_start: pd.Timestamp, test_start: pd.Timestamp) -> pd.Series:
    ts = pd.to_datetime(timestamps, utc=True)
    return pd.Series(np.where(ts >= test_start, "test", np.where(ts >= val_start, "val", "train")),
                     index=timestamps.index)


TRAIN_FRACTION = 1.0


def _published(model: str, home: Home) -> str:
    """The published version's name, "none" when nothing is published (`Retriever.version`)."""
    try:
        return latest(home, model).name
    except BadModelVersion:
        return "none"


def negatives_of(dataset: dict) -> NegativeSettings:
    """The negative settings a published ranker's dataset was built with (its manifest's
    `dataset`), so an evaluation rebuilds the same rows."""
    made = dataset.get("negatives_from") or {}
    source = {"logged": "auto"}.get(dataset.get("negatives", "auto"), dataset.get("negatives", "auto"))
    return NegativeSettings(source=source, **{k: made[k] for k in ("pool", "per_positive") if k in made})


def service_layouts(home: Home, redis_url: str, services: tuple[str, ...]) -> dict[str, Layout]:
    """Each service's layout as the registry holds it (raises `ContractError` with what to fix)."""
    store = feature_store(home, redis_url)
    return {name: Layout(name, service_fields(store, name)) for name in services}


def load_ranking_data(home: Home, redis_url: str, *, fraction: float = TRAIN_FRACTION, eval_fraction: float = 1.0,
                      seed: int = 0, rebuild: bool = False, negatives: NegativeSettings = DEFAULT_NEGATIVES,
                      services: tuple[str, ...] = (TEACHER_SERVICE, STUDENT_SERVICE)) -> RankingData:
    """The joined, split set, from the cache when the same (services and their fields,
    fractions, window, seed, negatives and the retriever they came from) was built before."""
    started = time.perf_counter()
    services = tuple(dict.fromkeys(services))
    layouts = service_layouts(home, redis_url, services)
    samples = load_samples(home)
    val_start, test_start = day_split(samples["event_timestamp"], samples["label_click"])
    window = (samples["event_timestamp"].min().isoformat(), samples["event_timestamp"].max().isoformat())
    source = resolve_source(samples, negatives)
    columns = sorted({c for layout in layouts.values() for c in layout.columns})
    key = {"service": "+".join(services), "columns": hashlib.sha256("|".join(columns).encode()).hexdigest()[:10],
           "fraction": fraction, "eval_fraction": eval_fraction, "seed": seed,
           "window": list(window), "val_start": val_start.isoformat(), "test_start": test_start.isoformat(),
           "negatives": source}
    if source == "recall":  # the rows depend on the retriever: its two-tower version keys the cache
        key["negatives_from"] = {"two_tower": _published("two_tower", home), "pool": negatives.pool,
                                 "per_positive": negatives.per_positive}
        shown = len(logged_parts(samples)[1])
        if shown:  # our exposures nobody clicked (built as positives before: caches from then are stale)
            key["shown_negatives"] = shown
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    path = home.datasets / f"{services[0]}-f{fraction:g}-e{eval_fraction:g}-{window[1][:10]}-{digest}.parquet"
    cached = path.exists() and not rebuild
    if cached:
        frame = pd.read_parquet(path)
        frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    else:
        split = assign_split(samples["event_timestamp"], val_start, test_start)
        rng = np.random.default_rng(seed)
        keep = rng.random(len(samples)) < np.where(split == "train", fraction, eval_fraction)
        rows = samples[keep].reset_index(drop=True)
        if source != "recall":
            frame = build_training_set(home, redis_url, services, entity_df=rows).frame
        else:
            from retrieval.service import Retriever

            retriever = Retriever.load(home)
            logged, shown = logged_parts(rows)
            positives = build_training_set(home, redis_url, [*services, RECALL_SERVICE], entity_df=logged).frame
            kept, negative_rows, _ = recall_samples(retriever, positives, replace(negatives, seed=seed))
            parts = [build_training_set(home, redis_url, services, entity_df=negative_rows).frame]
            if len(shown):  # our exposures nobody clicked: impressions as served, not positives to condition
                parts.append(build_training_set(home, redis_url, services, entity_df=shown).frame)
            recall_only = [c for c in positives.columns if c not in parts[0].columns and "__" in c]
            frame = pd.concat([positives[kept].drop(columns=recall_only), *parts], ignore_index=True).sort_values(
                ["event_timestamp", "user_id", "item_id"], kind="stable").reset_index(drop=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        frame.to_parquet(tmp, index=False)
        tmp.replace(path)
    split = assign_split(frame["event_timestamp"], val_start, test_start)
    return RankingData(frame, path, key, split, layouts, time.perf_counter() - started, cached)
