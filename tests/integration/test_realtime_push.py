"""The serving path's direct push writes the same Redis bytes as Feast's own `store.push`."""

from __future__ import annotations

import pandas as pd
import pytest

from serving.realtime import feast_pusher, realtime_writer
from tests.integration.serving_fixtures import served_copy
from vitrine.featurestore.repo import feature_store, project_name

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(small_home, tmp_path_factory):
    yield from served_copy(small_home, tmp_path_factory.mktemp("served-push"))


def test_direct_push_bytes_equal_feasts_push(served):
    import redis

    from vitrine.featurestore import encode

    home, url = served
    store = feature_store(home, url)
    client = redis.Redis.from_url(url)
    ts = pd.Timestamp("2024-05-03T12:30:00.123456Z")

    def row(user: str) -> pd.DataFrame:
        return pd.DataFrame({"user_id": [user], "event_timestamp": [ts], "rt_impressions": [3], "rt_clicks": [1],
                             "rt_carts": [0], "rt_purchases": [None],
                             "rt_last_event_at": [pd.Timestamp("2024-05-03T12:29:59Z")],
                             "rt_recent_items": [["i2", "i1"]], "rt_bought_items": [[]]})

    feast_pusher(store)(row("via-feast"))
    with client.pipeline(transaction=False) as pipe:
        for rkey, fields in realtime_writer(store, project_name())(row("via-direct").to_dict("records")).items():
            pipe.hset(rkey, mapping=fields)
        pipe.execute()
    key = {u: encode.entity_keys({"user_id": [u]}, project_name())[0] for u in ("via-feast", "via-direct")}
    by_feast, direct = client.hgetall(key["via-feast"]), client.hgetall(key["via-direct"])
    assert by_feast and direct == by_feast
    # and Feast reads the directly pushed row back
    got = store.get_online_features(features=["user_realtime:rt_clicks", "user_realtime:rt_recent_items"],
                                    entity_rows=[{"user_id": "via-direct"}]).to_dict()
    assert got["rt_clicks"] == [1] and got["rt_recent_items"] == [["i2", "i1"]]
    client.close()
