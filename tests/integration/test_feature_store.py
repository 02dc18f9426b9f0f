"""Real Feast on a real Redis: `feast apply`, materialisation, online reads equal the latest
offline values, point-in-time training sets without leakage, TTL behaviour."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vitrine.config import Home
from vitrine.featurestore.materialize import materialize
from vitrine.featurestore.realtime import ensure_table
from vitrine.featurestore.repo import feature_store, run_feast
from vitrine.featurestore.training import historical_features
from vitrine.online.redis_local import ManagedRedis, redis_url

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def feast_home(small_home: Home):
    """The small home with `feast apply` done and everything materialised into its own Redis."""
    url = redis_url(small_home)
    ensure_table(small_home)
    run_feast(small_home, url, ["apply"], capture=True)
    report = materialize(small_home, url)
    yield small_home, url, report
    ManagedRedis(small_home.redis_dir).stop()


def offline_latest(home: Home, table: str, key: str) -> pd.DataFrame:
    df = pd.read_parquet(home.features / table)
    return df.sort_values("event_timestamp").drop_duplicates(key, keep="last").set_index(key)


def same(a, b) -> bool:
    if isinstance(b, (list, np.ndarray)):
        if a is None:
            return False
        if np.array(b).dtype.kind == "f":
            return list(a) == pytest.approx(list(b))
        return list(a) == list(b)
    if b is None or (isinstance(b, float) and np.isnan(b)) or b is pd.NaT:
        return a is None or (isinstance(a, float) and np.isnan(a))
    if isinstance(b, pd.Timestamp):
        # Feast keeps unix timestamps in whole seconds
        return a is not None and pd.Timestamp(a).tz_convert("UTC") == b.floor("s")
    return a == pytest.approx(b) if isinstance(b, float) else a == b


@pytest.mark.parametrize(("view", "key"), [("user_behaviour", "user_id"), ("user_preferences", "user_id"),
                                           ("item_stats", "item_id"),
                                           ("item_attributes", "item_id"), ("item_cf", "item_id"),
                                           ("merchant_stats", "merchant_id")])
def test_online_values_equal_the_latest_offline_values(feast_home, view: str, key: str):
    home, url, _ = feast_home
    store = feature_store(home, url)
    fv = store.get_feature_view(view)
    latest = offline_latest(home, view, key)
    refs = [f"{view}:{f.name}" for f in fv.features]
    online = store.get_online_features(features=refs, entity_rows=[{key: k} for k in latest.index]).to_df()
    online = online.set_index(key)
    assert len(latest) > 0
    for f in fv.features:
        for k in latest.index:
            assert same(online.loc[k, f.name], latest.loc[k, f.name]), (view, f.name, k)


def test_materialisation_is_incremental(feast_home):
    home, url, first = feast_home
    assert first.views["user_behaviour"].rows == 2  # u1 and u2, latest snapshot only
    assert first.views["item_attributes"].rows == 3  # i1's newest version wins
    again = materialize(home, url)
    assert again.rows == 0
    assert all(v.skipped.startswith("up to date") or "no rows" in v.skipped for v in again.views.values())
    store = feature_store(home, url)
    assert store.get_feature_view("user_behaviour").most_recent_end_time.isoformat().startswith("2024-05-04")


def test_point_in_time_join_sees_no_future_values(feast_home):
    """A feature that changes after a label's time must appear with its old value."""
    home, url, _ = feast_home
    store = feature_store(home, url)
    rows = pd.DataFrame({
        "user_id": ["u1", "u1", "u2"],
        "item_id": ["i3", "i1", "i1"],
        "merchant_id": ["m2", "m1", "m1"],
        # u1's click on i3 at 09:00:05 on 05-03; i1 was repriced 10 → 99 at 11:00 on 05-03
        "event_timestamp": pd.to_datetime(["2024-05-03T09:00:00Z", "2024-05-03T10:59:59Z",
                                           "2024-05-03T12:00:00Z"], utc=True),
        "device": ["ios", "web", None], "price": [40.0, 10.0, 99.0],
    })
    out = historical_features(store, "ranker_v1", rows)
    assert len(out) == 3 and out["user_id"].tolist() == ["u1", "u1", "u2"]  # row for row
    # u1's behaviour at 09:00 on 05-03 comes from the 05-03 snapshot: the 05-03 click (the
    # label itself) is not in it — the 05-04 snapshot would say clicks_7d = 3
    assert out.loc[0, "user_behaviour__clicks_7d"] == 2
    assert out.loc[0, "user_behaviour__clicks_1d"] == 0
    assert out.loc[1, "item_attributes__price"] == 10.0  # one second before the reprice
    assert out.loc[2, "item_attributes__price"] == 99.0
    # u2 had no events before 05-03 12:00: no behaviour row may be borrowed from 05-04
    assert pd.isna(out.loc[2, "user_behaviour__clicks_7d"])
    # on-demand context from the row itself
    assert out.loc[0, "context__hour_of_day"] == 9 and out.loc[0, "context__day_of_week"] == 4  # a Friday
    assert out.loc[0, "context__price_vs_user"] == pytest.approx(40.0 / out.loc[0, "user_behaviour__price_level"])


def test_ttl_hides_stale_snapshots(feast_home):
    home, url, _ = feast_home
    store = feature_store(home, url)
    rows = pd.DataFrame({"user_id": ["u1", "u1"], "item_id": ["i1", "i1"], "merchant_id": ["m1", "m1"],
                         # 05-04 snapshot is 12 h old (inside the 36 h TTL), then 6 days old
                         "event_timestamp": pd.to_datetime(["2024-05-04T12:00:00Z", "2024-05-10T00:00:00Z"],
                                                           utc=True)})
    out = historical_features(store, "ranker_v1", rows)
    assert out.loc[0, "user_behaviour__clicks_7d"] == 3
    assert pd.isna(out.loc[1, "user_behaviour__clicks_7d"])
    # versioned catalogue attributes have no TTL: the latest version is still valid
    assert out.loc[1, "item_attributes__price"] == 99.0


def test_push_source_updates_realtime_features_online(feast_home):
    """The collector's path: a push to `user_realtime_push` is readable at once."""
    from feast.data_source import PushMode

    home, url, _ = feast_home
    store = feature_store(home, url)
    now = pd.Timestamp("2024-05-04T10:00:00Z")
    row = pd.DataFrame({"user_id": ["u9"], "event_timestamp": [now], "rt_impressions": [3], "rt_clicks": [1],
                        "rt_carts": [0], "rt_purchases": [0], "rt_last_event_at": [now],
                        "rt_recent_items": [["i2", "i1"]], "rt_bought_items": [[]]})
    store.push("user_realtime_push", row, to=PushMode.ONLINE)
    got = store.get_online_features(features=["user_realtime:rt_clicks", "user_realtime:rt_recent_items"],
                                    entity_rows=[{"user_id": "u9"}]).to_dict()
    assert got["rt_clicks"] == [1] and got["rt_recent_items"] == [["i2", "i1"]]


def test_plain_feast_works_on_the_home_after_the_exports(feast_home, monkeypatch):
    """What a trainer does: `eval "$(vitrine feast env)"`, then Feast itself — its CLI from
    `feature_repo/`, and `FeatureStore(...)` pulling a point-in-time dataset by service."""
    import shlex
    import subprocess
    import sys
    from pathlib import Path

    from feast import FeatureStore

    from vitrine.featurestore.repo import FEATURE_REPO, feast_exports
    from vitrine.featurestore.training import load_samples

    home, url, _ = feast_home
    exports = feast_exports(home, url)
    feast = Path(sys.executable).with_name("feast")
    listed = subprocess.run(["bash", "-c", f"{exports}\ncd {shlex.quote(str(FEATURE_REPO))} && "
                                           f"{shlex.quote(str(feast))} feature-services list"],
                            capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "ranker_v1" in listed.stdout and "two_tower_v1" in listed.stdout

    for line in exports.splitlines():
        key, value = shlex.split(line.removeprefix("export "))[0].split("=", 1)
        monkeypatch.setenv(key, value)
    store = FeatureStore(repo_path=str(FEATURE_REPO))
    rows = load_samples(home).groupby("user_id").tail(1).head(20)[["user_id", "item_id", "event_timestamp"]]
    plain = store.get_historical_features(entity_df=rows.reset_index(drop=True),
                                          features=store.get_feature_service("two_tower_v1"),
                                          full_feature_names=True).to_df()
    ours = historical_features(feature_store(home, url), "two_tower_v1", rows)
    column = "user_behaviour__clicks_30d"
    assert column in plain and len(plain) > 0
    both = plain.merge(ours, on=["user_id", "item_id"], suffixes=("", "_ours"))
    assert len(both) > 0
    assert all(same(a, b) for a, b in zip(both[column], both[f"{column}_ours"], strict=True))


@pytest.mark.parametrize("service", ["ranker_v1", "coarse_v1", "two_tower_v1", "recall_v1"])
def test_registered_services_keep_the_contract_the_repository_defines(feast_home, service):
    """What training reads from the registry (fields, order, types, encoding tags, known
    flags) is what feature_repo/ defines: `feast apply` keeps field and view tags."""
    from vitrine.featurestore.contract import repo_fields, service_fields

    home, url, _ = feast_home
    registered = service_fields(feature_store(home, url), service)
    assert registered == repo_fields(service)
    assert any(f.tags.get("encoding") for f in registered) or service == "recall_v1"


def test_skew_check_finds_a_planted_mismatch_and_ttl_holds_online(feast_home):
    """`vitrine skew`'s check: nothing differs on a freshly materialised home; a value changed in
    Redis is reported for its feature and user; a stale row (a user idle past the 36-hour
    snapshot TTL) is not served, as the training join does not return it."""
    import redis

    from serving.features import UserFeatureReader, entity_views
    from serving.skew import skew_check
    from vitrine.featurestore.encode import ViewLayout, field_key
    from vitrine.featurestore.repo import project_name

    home, url, _ = feast_home
    store = feature_store(home, url)
    client = redis.Redis.from_url(url)
    project = project_name()
    clean = skew_check(store, client, project, ["u1", "u2", "nobody"])
    assert clean.mismatches == 0 and clean.features["user_behaviour__clicks_30d"].compared == 3

    view = store.get_feature_view("user_behaviour")
    layout = ViewLayout.of(view)
    key = next(layout.rows(pd.DataFrame({"user_id": ["u1"], "event_timestamp": [pd.Timestamp("2024-05-01", tz="UTC")],
                                         **{f.name: [None] for f in view.features}}), project))[0]
    field = field_key("user_behaviour", "clicks_30d")
    original = client.hget(key, field)
    planted = dict(next(layout.rows(pd.DataFrame({"user_id": ["u1"], "event_timestamp": [pd.Timestamp.now(tz="UTC")],
                                                  **{f.name: [None] for f in view.features}}).assign(clicks_30d=999),
                                    project))[1])[field]
    client.hset(key, field, planted)
    try:
        report = skew_check(store, client, project, ["u1", "u2"])
        bad = report.features["user_behaviour__clicks_30d"]
        assert bad.mismatches == 1 and bad.examples[0][:2] == ("u1", 999) and report.mismatches == 1
        assert "user_behaviour__clicks_30d" in report.render()
    finally:
        client.hset(key, field, original)

    # an idle user: their last snapshot is 40 days before the feature clock
    reader = UserFeatureReader(client, project, entity_views(store, "user"))
    stale_at = pd.Timestamp(reader.clock_us, unit="us", tz="UTC") - pd.Timedelta(days=40)
    row = pd.DataFrame({"user_id": ["idle"], "event_timestamp": [stale_at],
                        **{f.name: [None] for f in view.features}}).assign(clicks_30d=7, segment="normal")
    rkey, fields = next(layout.rows(row, project))
    client.hset(rkey, mapping=dict(fields))
    try:
        assert reader.read("idle").values["user_behaviour__clicks_30d"] is None  # expired, as in training
        assert "user_behaviour" not in reader.read("idle").timestamps
        no_ttl = UserFeatureReader(client, project, entity_views(store, "user"), clock_us=None)
        assert no_ttl.read("idle").values["user_behaviour__clicks_30d"] == 7  # what was served before
        assert skew_check(store, client, project, ["idle"]).mismatches == 0
    finally:
        client.delete(rkey)


def test_rows_stamped_at_or_before_the_epoch_are_materialised(small_home: Home, tmp_path):
    """Catalogue versions without dates are stamped 1970-01-01 (the Taobao log's items), old
    films' by release (1950): a first materialisation starts before any of them. It started at
    the epoch, open at its start, and wrote neither — their categories never reached Redis."""
    import shutil

    home = Home(tmp_path / "home")
    for part in ("events", "catalog", "features"):
        shutil.copytree(small_home.root / part, home.root / part)
    table = home.features / "item_attributes"
    rows = pd.read_parquet(table)
    rows = rows.sort_values("event_timestamp").drop_duplicates("item_id", keep="last")
    stamps = {"i1": "1970-01-01T00:00:00Z", "i2": "1950-06-01T00:00:00Z", "i3": "1970-01-01T00:00:00Z"}
    rows["event_timestamp"] = pd.to_datetime(rows["item_id"].map(stamps), utc=True).astype("datetime64[us, UTC]")
    shutil.rmtree(table)
    table.mkdir()
    rows.to_parquet(table / "part-0.parquet", index=False)
    url = redis_url(home)
    try:
        ensure_table(home)
        run_feast(home, url, ["apply"], capture=True)
        report = materialize(home, url)
        assert report.views["item_attributes"].rows == 3
        online = feature_store(home, url).get_online_features(
            features=["item_attributes:category"], entity_rows=[{"item_id": i} for i in ("i1", "i2", "i3")]).to_dict()
        assert online["category"] == ["a/x", "a/y", "b/z"]
    finally:
        ManagedRedis(home.redis_dir).stop()
