"""Ranking training data: the labelled samples joined point in time with `ranker_v1` through
Feast, cached under `<home>/datasets/`, and split by time.

The student's `coarse_v1` columns are a subset of `ranker_v1`'s, so one join serves both:
the student reads the same rows projected to its columns.

Split: the last full day is the test day (with any partial day after it, at the log's
clock edge), the full day before it the validation day, everything earlier trains. `fraction`
samples the training days (default `TRAIN_FRACTION`: all of them — on `demo` the teacher's
CVR head overtakes the click-space CVR-only DNN with all the training rows, not with a quarter;
docs/benchmarks.md "Ranking"); validation and test days are sampled at `eval_fraction`
(default: whole days — purchases are rare, ~0.25 % of impressions, and CVR metrics need all
of them).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from vitrine.config import Home
from vitrine.featurestore.training import build_training_set, load_samples

SERVICE = "ranker_v1"
LABELS = ("label_click", "label_purchase")


@dataclass
class RankingData:
    frame: pd.DataFrame
    path: Path
    key: dict
    split: pd.Series  # "train" | "val" | "test" per row
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


def day_split(timestamps: pd.Series, min_share: float = 0.5) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(validation day start, test day start): the last two days holding at least `min_share`
    of the median day's rows; a partial day after them belongs to the test part."""
    days = pd.to_datetime(timestamps, utc=True).dt.floor("D")
    counts = days.value_counts().sort_index()
    full = counts[counts >= min_share * counts.median()].index
    if len(full) < 3:
        raise ValueError(f"need at least 3 full days of samples to split train/validation/test by time, "
                         f"found {len(full)} ({', '.join(str(d.date()) for d in counts.index)})")
    return full[-2], full[-1]


def assign_split(timestamps: pd.Series, val_start: pd.Timestamp, test_start: pd.Timestamp) -> pd.Series:
    ts = pd.to_datetime(timestamps, utc=True)
    return pd.Series(np.where(ts >= test_start, "test", np.where(ts >= val_start, "val", "train")),
                     index=timestamps.index)


TRAIN_FRACTION = 1.0


def load_ranking_data(home: Home, redis_url: str, *, fraction: float = TRAIN_FRACTION, eval_fraction: float = 1.0,
                      seed: int = 0, rebuild: bool = False) -> RankingData:
    """The joined, split set, from the cache when the same (service, fractions, window, seed)
    was built before."""
    started = time.perf_counter()
    samples = load_samples(home)
    val_start, test_start = day_split(samples["event_timestamp"])
    window = (samples["event_timestamp"].min().isoformat(), samples["event_timestamp"].max().isoformat())
    key = {"service": SERVICE, "fraction": fraction, "eval_fraction": eval_fraction, "seed": seed,
           "window": list(window), "val_start": val_start.isoformat(), "test_start": test_start.isoformat()}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    path = home.root / "datasets" / f"{SERVICE}-f{fraction:g}-e{eval_fraction:g}-{window[1][:10]}-{digest}.parquet"
    cached = path.exists() and not rebuild
    if cached:
        frame = pd.read_parquet(path)
        frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    else:
        split = assign_split(samples["event_timestamp"], val_start, test_start)
        rng = np.random.default_rng(seed)
        keep = rng.random(len(samples)) < np.where(split == "train", fraction, eval_fraction)
        rows = samples[keep].reset_index(drop=True)
        frame = build_training_set(home, redis_url, SERVICE, entity_df=rows).frame
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        frame.to_parquet(tmp, index=False)
        tmp.replace(path)
    split = assign_split(frame["event_timestamp"], val_start, test_start)
    return RankingData(frame, path, key, split, time.perf_counter() - started, cached)
