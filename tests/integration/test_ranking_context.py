"""The serving-side context features equal Feast's on-demand `context` view: on hand-picked
requests through the registry's own transformation, and on the point-in-time training rows of
the small home. The small home's two days of samples are refused for a time split, clearly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ranking.context import FEATURES, context_features
from vitrine.config import Home
from vitrine.featurestore.realtime import ensure_table
from vitrine.featurestore.repo import feature_store, run_feast
from vitrine.featurestore.training import build_training_set
from vitrine.online.redis_local import ManagedRedis, redis_url

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def applied(small_home: Home):
    url = redis_url(small_home)
    ensure_table(small_home)
    run_feast(small_home, url, ["apply"], capture=True)
    yield small_home, url
    ManagedRedis(small_home.redis_dir).stop()


def _same(ours: np.ndarray, feast: np.ndarray) -> bool:
    return bool(np.all((ours == feast) | (np.isnan(ours.astype(float)) & np.isnan(feast.astype(float)))))


def test_context_features_equal_the_on_demand_view(applied):
    home, url = applied
    odfv = feature_store(home, url).get_on_demand_feature_view("context")
    saturday_noon = int(pd.Timestamp("2024-05-04T12:00:00Z").timestamp())
    requests = [  # (request time, device, candidate prices, user price level)
        (saturday_noon, 2, [10.0, np.nan, 0.0], 20.0),
        (saturday_noon + 86400 - 1, 0, [5.0, 7.5], np.nan),   # Sunday 11:59:59 pm, unknown price level
        (saturday_noon + 86400 + 43200, -1, [3.0], 0.0),       # Monday midnight, unknown device, level 0
        (1_714_521_599, 4, [12.0, 1e6], 0.25),                 # 2024-04-30 23:59:59
    ]
    for t, device, prices, level in requests:
        n = len(prices)
        table = pa.table({"request_unix_s": [t] * n, "device_code": [device] * n, "candidate_price": prices,
                          "user_behaviour__price_level": [level] * n})
        feast = odfv.transform_arrow(table, full_feature_names=True)
        ours = context_features(t, None if device == -1 else device, prices, None if np.isnan(level) else level)
        for f in FEATURES:
            column = f"context__{f}"
            assert _same(ours[column], feast.column(column).to_numpy(zero_copy_only=False)), (t, f)


def test_training_rows_carry_the_same_context_as_serving(applied):
    home, url = applied
    frame = build_training_set(home, url, "ranker_v1").frame
    assert len(frame) > 0
    for _, row in frame.iterrows():
        ours = context_features(row["request_unix_s"], row["device_code"], [row["candidate_price"]],
                                row["user_behaviour__price_level"])
        for f in FEATURES:
            assert _same(ours[f"context__{f}"], np.array([row[f"context__{f}"]])), (row["user_id"], f)


def test_two_days_of_samples_cannot_be_split_by_time(applied):
    from training.ranking.data import load_ranking_data

    home, url = applied
    with pytest.raises(ValueError, match="at least 3 full days"):
        load_ranking_data(home, url)
