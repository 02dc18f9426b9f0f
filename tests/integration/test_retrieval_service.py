"""Retrieval end to end on real feature tables: the Retriever built from Spark's tables
(filters, route labels, unknown users, degraded fallback), and `evaluate retrieval` on a
click-only log (no impressions) with a real Spark, Feast and TFRS run."""

from __future__ import annotations

import pandas as pd
import pytest

from retrieval.service import Retriever
from retrieval.tables import user_frame
from vitrine.config import Home

pytestmark = pytest.mark.integration


def _features(frame: pd.DataFrame, user: str) -> dict:
    row = frame[frame["user_id"] == user].iloc[0].to_dict()
    return {k: (None if isinstance(v, float) and pd.isna(v) else v) for k, v in row.items()}


def test_retriever_from_feature_tables_filters_bought_and_labels_routes(small_home: Home):
    r = Retriever.load(small_home, two_tower=None)
    assert sorted(r.catalogue.ids.tolist()) == ["i1", "i2", "i3"]
    assert {"item_cf", "content", "category", "hot", "new"} <= set(r.routes)
    users = user_frame(small_home.features, users=["u1", "u2", "nobody"])
    u1 = _features(users, "u1")
    assert list(u1["user_preferences__bought_items"]) == ["i2"]
    state = r.user_state("u1", u1, seen=[])
    assert state.bought == {"i2"} and state.segment == "potential"
    got = r.recall(state, 3)
    assert got and "i2" not in [c.item_id for c in got]  # bought: never comes back
    assert all(c.routes for c in got)
    # an unknown user still gets an answer (no features at all)
    stranger = r.user_state("nobody", _features(users, "nobody"))
    assert len(r.recall(stranger, 3)) == 3
    assert [c.item_id for c in r.recall(stranger, 3, exclude=["i1"])].count("i1") == 0
    assert [c.routes[0] for c in r.fallback(2)] == ["hot", "hot"]


@pytest.mark.slow
def test_evaluate_retrieval_on_a_click_only_log(tiny_data, tmp_path):
    from evaluation.retrieval import evaluate_retrieval
    from vitrine.data.ingest import ingest
    from vitrine.online.redis_local import ManagedRedis, redis_url

    events = pd.read_parquet(tiny_data / "events")
    clicks = events[events["event_type"] == "click"].drop(columns=[c for c in ("date",) if c in events])
    clicks.to_parquet(tmp_path / "clicks.parquet", index=False)
    home = Home(tmp_path / "home")
    ingest(home, items=[tiny_data / "items.parquet"], events=[tmp_path / "clicks.parquet"])
    try:
        report = evaluate_retrieval(home, redis_url(home), ks=(10, 50), epochs=1, max_users=300,
                                    out=tmp_path / "report", log=lambda *_: None)
    finally:
        ManagedRedis(home.redis_dir).stop()
    methods = set(report.metrics)
    assert {"merged", "two_tower", "item_cf", "hot", "popularity", "item_knn"} <= methods
    assert 0 < report.users <= 300
    for m in report.metrics.values():
        assert 0.0 <= m["recall@10"] <= m["recall@50"] <= 1.0
        assert 0.0 <= m["coverage@50"] <= 1.0
    assert report.metrics["merged"]["recall@50"] > 0
    assert (tmp_path / "report" / "retrieval.png").stat().st_size > 0
    assert "| merged |" in (tmp_path / "report" / "retrieval.md").read_text()
