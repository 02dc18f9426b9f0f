"""Integration fixtures: a small home with hand-checkable events, features computed once."""

from __future__ import annotations

import pytest

from vitrine.config import Home
from vitrine.data.ingest import ingest

EVENTS = """event_time,user_id,item_id,event_type,session_id,price,quantity
2024-05-01T10:00:00Z,u1,i1,impression,s1,10,
2024-05-01T10:00:01Z,u1,i1,click,s1,10,
2024-05-01T10:01:00Z,u1,i2,impression,s1,20,
2024-05-01T10:02:00Z,u1,i2,click,s1,20,
2024-05-01T10:03:00Z,u1,i2,add_to_cart,s1,,
2024-05-01T10:05:00Z,u1,i2,purchase,s1,20,2
2024-05-03T09:00:00Z,u1,i3,impression,s2,40,
2024-05-03T09:00:05Z,u1,i3,click,s2,40,
2024-05-03T12:00:00Z,u2,i1,impression,s3,10,
2024-05-03T12:00:03Z,u2,i1,click,s3,10,
2024-05-03T12:00:10Z,u2,i2,impression,s3,20,
"""
ITEMS = """item_id,merchant_id,category,brand,price,title,tags,created_at,updated_at
i1,m1,a/x,B1,10,red shoe,shoes|red,2024-01-01T00:00:00Z,2024-01-01T00:00:00Z
i2,m1,a/y,B2,20,blue shoe,shoes|blue,2024-01-01T00:00:00Z,2024-01-01T00:00:00Z
i3,m2,b/z,B1,40,red hat,hats|red,2024-01-01T00:00:00Z,2024-01-01T00:00:00Z
i1,m1,a/x,B1,99,red shoe,shoes|red,2024-01-01T00:00:00Z,2024-05-03T11:00:00Z
"""


@pytest.fixture(scope="session")
def small_home(tmp_path_factory, spark) -> Home:
    root = tmp_path_factory.mktemp("spark-features")
    (root / "events.csv").write_text(EVENTS)
    (root / "items.csv").write_text(ITEMS)
    home = Home(root / "home")
    ingest(home, items=[root / "items.csv"], events=[root / "events.csv"])
    from spark_jobs.run import run_features

    run_features(home, spark)
    return home


