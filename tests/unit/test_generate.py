"""The synthetic platform: funnel calibration, skew, segments, learnable tastes, reproducibility."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from vitrine.synth.behaviour import calibrate
from vitrine.synth.generate import generate
from vitrine.synth.presets import PRESETS, get_preset


def events(data: Path) -> pd.DataFrame:
    return pq.read_table(data / "events").to_pandas()


def digest(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_calibrate_hits_the_target_mean():
    logits = np.random.default_rng(0).normal(0, 2, 10_000)
    b = calibrate(logits, 0.07)
    assert abs((1 / (1 + np.exp(-(b + logits)))).mean() - 0.07) < 1e-6


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path, tiny_data: Path):
    small = get_preset("tiny").with_overrides(users=300, items=200, merchants=10)
    generate(small, tmp_path / "a", seed=5, days=2)
    generate(small, tmp_path / "b", seed=5, days=2)
    generate(small, tmp_path / "c", seed=6, days=2)
    a, b, c = digest(tmp_path / "a"), digest(tmp_path / "b"), digest(tmp_path / "c")
    assert a == b
    assert a["events/events-2026-10-01-000.parquet"] != c["events/events-2026-10-01-000.parquet"]


def check_platform_shape(data: Path, *, tolerance: float) -> None:
    df = events(data)
    n = df["event_type"].value_counts()
    ctr = n["click"] / n["impression"]
    conv = n["purchase"] / n["click"]
    assert abs(ctr - 0.07) < tolerance * 0.07, ctr
    assert abs(conv - 0.026) < tolerance * 2.5 * 0.026, conv  # purchases are rarer: wider band

    # power-law popularity: the top 5 % of items take far more than 5 % of impressions
    imp = df[df["event_type"] == "impression"]["item_id"].value_counts()
    top = imp.iloc[: max(1, len(imp) // 20)].sum() / imp.sum()
    assert top > 0.25, top

    # segments: the hidden mix, and heavy buyers buy more per active user than casual users
    truth = pq.read_table(data / "truth" / "users.parquet").to_pandas().set_index("user_id")
    share = truth["segment"].value_counts(normalize=True)
    assert abs(share["casual"] - 0.70) < 0.03 and abs(share["heavy_buyer"] - 0.06) < 0.02
    active = df.groupby("user_id").size().index
    buys = df[df["event_type"] == "purchase"].groupby("user_id").size().reindex(active, fill_value=0)
    per_segment = buys.groupby(truth.loc[active, "segment"]).mean()
    assert per_segment["heavy_buyer"] > 3 * per_segment["casual"]

    # tastes are learnable: impressions in a user's favourite category are clicked more often
    items = pq.read_table(data / "items.parquet").to_pandas().drop_duplicates("item_id", keep="last")
    cat = items.set_index("item_id")["category"]
    shown = df[df["event_type"].isin(["impression", "click"])].copy()
    favourite = truth.loc[shown["user_id"], "fav_category_1"].to_numpy()
    shown["fav"] = cat.loc[shown["item_id"]].to_numpy() == favourite
    clicks = shown[shown["event_type"] == "click"]
    impressions = shown[shown["event_type"] == "impression"]
    ctr_fav = (clicks["fav"].sum()) / impressions["fav"].sum()
    ctr_other = (~clicks["fav"]).sum() / (~impressions["fav"]).sum()
    assert ctr_fav > 2 * ctr_other, (ctr_fav, ctr_other)

    # time of day: the evening is busier than the small hours
    hours = df["event_time"].dt.hour.value_counts()
    assert hours.loc[20:22].sum() > 4 * hours.loc[3:5].sum()


def test_tiny_platform_shape(tiny_data: Path):
    check_platform_shape(tiny_data, tolerance=0.1)


@pytest.mark.slow
def test_demo_platform_shape(tmp_path: Path):
    data = tmp_path / "demo"
    summary = generate(get_preset("demo"), data, seed=0)
    check_platform_shape(data, tolerance=0.03)
    dau = np.mean(summary.daily_active) / PRESETS["demo"].users
    assert 0.09 < dau < 0.14  # the brief: 130–150k actives of 1.3M users
    assert 40 < summary.rates()["events_per_active_user"] < 60  # the brief: ~50


def test_catalogue_changes_daily(tiny_data: Path):
    items = pq.read_table(tiny_data / "items.parquet").to_pandas()
    start = pd.Timestamp("2026-10-01", tz="UTC")
    versions = items[items["updated_at"] >= start]
    new = items[items["created_at"] >= start]["item_id"].unique()
    updates = versions[~versions["item_id"].isin(new)]
    per_day = updates.groupby(updates["updated_at"].dt.date).size()
    initial = (items["created_at"] < start).groupby(items["item_id"]).any().sum()
    assert np.allclose(per_day / initial, 0.10, atol=0.03)
    assert len(new) == 7 * round(800 * 0.003)
    # new items are shown only after they are listed
    ev = events(tiny_data)
    created = items.drop_duplicates("item_id").set_index("item_id")["created_at"]
    shown_new = ev[ev["item_id"].isin(new)]
    assert len(shown_new) > 0
    assert (shown_new["event_time"].to_numpy() > created.loc[shown_new["item_id"]].to_numpy()).all()
