"""The whole system on the `tiny` synthetic platform: Spark features, Feast apply and
materialisation, a two-tower, an MMoE teacher and an FM student trained for real (tiny
settings), served by a real gRPC server on port 0 over a real Redis. Answers are ranked by
the models (not degraded), sorted, free of bought items and labelled with routes; an event
changes the next answer; a newly published version is hot-reloaded, a bad one refused."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime

import pandas as pd
import pytest

from serving.config import Budgets, ServingConfig, Strategy
from serving.proto import pb
from tests.integration.serving_fixtures import running_server, stub_of
from vitrine.config import Home
from vitrine.versions import latest, models_dir, publish

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# budgets far above any stage's time: these tests are about what the models answer; a CI
# machine under load must not turn them into timing tests (budgets have their own tests)
RANKED = ServingConfig(port=0, http_port=None, reload_seconds=3600, budgets=Budgets(*[60_000.0] * 6),
                       strategies=(Strategy("control", 100, coarse=True, fine=True),))


@pytest.fixture(scope="module")
def trained(tiny_data, spark, tmp_path_factory):
    from spark_jobs.run import run_features
    from training.ranking.fm_student import FMSettings
    from training.ranking.mmoe import MMoESettings
    from training.ranking.pipeline import train_ranking
    from training.retrieval.pipeline import train_retrieval
    from training.retrieval.two_tower import TwoTowerSettings
    from vitrine.data.ingest import ingest
    from vitrine.featurestore.materialize import materialize
    from vitrine.featurestore.realtime import ensure_table
    from vitrine.featurestore.repo import run_feast
    from vitrine.online.redis_local import ManagedRedis, redis_url

    home = Home(tmp_path_factory.mktemp("trained") / "home")
    ingest(home, merchants=[tiny_data / "merchants.parquet"], items=[tiny_data / "items.parquet"],
           users=[tiny_data / "users.parquet"], events=[tiny_data / "events"])
    run_features(home, spark)
    url = redis_url(home)
    ensure_table(home)
    run_feast(home, url, ["apply"], capture=True)
    materialize(home, url)
    train_retrieval(home, url, settings=TwoTowerSettings(epochs=1))
    train_ranking(home, url, teacher=MMoESettings(epochs=1), student=FMSettings(epochs=2), fraction=0.5,
                  log=lambda *_: None)
    try:
        yield home, url
    finally:
        ManagedRedis(home.redis_dir).stop()


@pytest.fixture(scope="module")
def server(trained):
    home, url = trained
    yield from running_server(home, url, RANKED)


@pytest.fixture(scope="module")
def stub(server):
    yield from stub_of(server)


def _buyer(home: Home) -> tuple[str, list[str]]:
    prefs = pd.read_parquet(home.features / "user_preferences", columns=["user_id", "event_timestamp",
                                                                        "bought_items"])
    prefs = prefs.sort_values("event_timestamp").drop_duplicates("user_id", keep="last")
    prefs = prefs[prefs["bought_items"].map(lambda b: b is not None and len(b) > 0)]
    row = prefs.iloc[0]
    return row["user_id"], list(row["bought_items"])


def test_models_rank_the_answer(stub, trained):
    home, _ = trained
    user, bought = _buyer(home)
    r = stub.Recommend(pb.RecommendRequest(user_id=user, k=10), timeout=10)
    assert not r.degraded, r.degraded_reason
    assert len(r.items) == 10 and r.ab_bucket == "control"
    for model in ("two_tower", "ranker", "coarse"):
        assert latest(home, model).name in r.model_version
    scores = [i.score for i in r.items]
    assert scores == sorted(scores, reverse=True)
    assert not set(bought) & {i.item_id for i in r.items}  # bought: never comes back
    assert all(i.routes for i in r.items)
    assert all(0 < i.p_ctr < 1 and 0 < i.p_cvr < 1 for i in r.items)  # the teacher's heads
    assert {"features", "recall", "coarse", "fine", "adjust"} <= set(r.stage_ms)


def test_the_fast_paths_serve_and_agree_with_the_full_ones(server, trained):
    """Item-side inputs encoded once per item cache and the teacher's NumPy forward pass (what
    the server uses) give the answer that full per-request encoding and TensorFlow give."""
    from serving.encoded import encoded
    from serving.validation import recommend_request

    home, _ = trained
    core = server.core
    current = core.models.current
    assert current.teacher.numpy is not None and current.teacher.numpy_problem == ""
    assert encoded(core.items, current.teacher) is not None and encoded(core.items, current.student) is not None
    assert current.retriever.catalogue is core.items.catalogue  # one catalogue: candidate rows are cache rows
    req = recommend_request(RANKED, user_id=_buyer(home)[0], k=10, request_unix_s=1_780_000_000)
    fast = core.recommend(req)
    tables, forward = dict(core.items.derived), current.teacher.numpy
    try:
        core.items.derived.clear()
        current.teacher.numpy = None
        full = core.recommend(req)
    finally:
        core.items.derived.update(tables)
        current.teacher.numpy = forward
    assert not fast.degraded and not full.degraded and fast.ab_bucket == "control"
    assert [i.item_id for i in fast.items] == [i.item_id for i in full.items]
    assert [i.p_ctr for i in fast.items] == pytest.approx([i.p_ctr for i in full.items], abs=1e-5)
    assert [i.score for i in fast.items] == pytest.approx([i.score for i in full.items], rel=1e-4)


def test_unknown_users_get_a_ranked_answer(stub):
    r = stub.Recommend(pb.RecommendRequest(user_id="never-seen-before", k=5), timeout=10)
    assert not r.degraded and len(r.items) == 5


def test_a_purchase_removes_the_item_and_a_click_changes_the_answer(stub, server, trained):
    home, _ = trained
    user, _ = _buyer(home)
    before = stub.Recommend(pb.RecommendRequest(user_id=user, k=10), timeout=10)
    top = before.items[0].item_id
    ack = stub.TrackEvents(pb.TrackEventsRequest(events=[
        pb.Event(user_id=user, item_id=top, event_type="click"),
        pb.Event(user_id=user, item_id=top, event_type="purchase")]), timeout=10)
    assert ack.accepted == 2 and not ack.rejections
    server.core.consumers.drain()
    after = stub.Recommend(pb.RecommendRequest(user_id=user, k=10), timeout=10)
    assert not after.degraded and top not in [i.item_id for i in after.items]
    assert [i.item_id for i in after.items] != [i.item_id for i in before.items]


def test_a_new_version_is_hot_reloaded_and_a_bad_one_refused(stub, server, trained):
    home, _ = trained
    core = server.core
    serving = latest(home, "coarse")
    # a copy of the serving version under a new name: valid, so it is swapped in
    fresh = models_dir(home, "coarse") / "20990101T000000-copy"
    shutil.copytree(serving, fresh)
    manifest = (fresh / "manifest.json").read_text().replace(serving.name, fresh.name)
    (fresh / "manifest.json").write_text(manifest)
    publish(home, "coarse", fresh)
    core.refresh()
    r = stub.Recommend(pb.RecommendRequest(user_id="someone", k=5), timeout=10)
    assert fresh.name in r.model_version and not r.degraded
    # a tampered version: refused, the copy keeps serving
    bad = models_dir(home, "coarse") / "20990102T000000-bad"
    shutil.copytree(fresh, bad)
    first = sorted(p for p in bad.iterdir() if p.suffix == ".npy")[0]
    first.write_bytes(first.read_bytes() + b"tampered")
    (models_dir(home, "coarse") / "latest").write_text(bad.name + "\n")
    core.refresh()
    r = stub.Recommend(pb.RecommendRequest(user_id="someone", k=5), timeout=10)
    assert fresh.name in r.model_version and bad.name not in r.model_version and not r.degraded
    publish(home, "coarse", fresh)  # leave a valid `latest` for the tests after this one


def test_a_stage_past_its_budget_gives_a_degraded_answer_not_an_error(trained):
    from dataclasses import replace

    from serving.core import Core
    from serving.validation import recommend_request

    home, url = trained
    tight = replace(RANKED, budgets=replace(RANKED.budgets, coarse=0.0001))  # no FM call is this fast
    core = Core(home, tight, redis_url=url)
    try:
        r = core.recommend(recommend_request(tight, user_id=_buyer(home)[0], k=5))
    finally:
        core.close()
    assert r.degraded and r.degraded_reason == "coarse_late"
    assert len(r.items) == 5 and all(i.routes[0] in ("hot", "new") for i in r.items)


# the feature walkthrough of docs/features.md, last in this module (it changes the home's
# registry and publishes a ranker on a new feature service)
NEW_VIEW = '''
from datetime import timedelta

from common import table_path
from entities import item
from feast import FeatureView, Field, FileSource
from feast.types import Float64

item_quality = FeatureView(
    name="item_quality", entities=[item], ttl=timedelta(0),
    schema=[Field(name="return_rate", dtype=Float64, description="share of orders returned")],
    source=FileSource(name="item_quality_source", path=table_path("item_quality"), timestamp_field="event_timestamp"),
    tags={"owner": "returns-team"},
)
'''
RANKER_V2 = '''
from quality_views import item_quality

ranker_v2 = FeatureService(name="ranker_v2", features=[*RANKER_V1, item_quality],
                           description="ranker_v1 + the item's return rate")
two_tower_v2 = FeatureService(name="two_tower_v2", features=[*TWO_TOWER_V1, item_quality])
'''


def test_a_new_feature_reaches_training_and_serving_through_a_service_version(trained, tmp_path):
    """A team registers a feature (a new view, and `ranker_v2` / `two_tower_v2` listing it),
    `feast apply`, materialise, `vitrine train ranking --service ranker_v2` and `vitrine train
    retrieval --tower-service two_tower_v2`: the models are trained on it and the server reads
    it — no Python edits outside the feature repository."""
    import numpy as np

    from app.cli import main
    from ranking.teacher import Teacher
    from serving.core import Core
    from vitrine.featurestore.materialize import materialize
    from vitrine.featurestore.repo import FEATURE_REPO, run_feast

    home, url = trained
    repo = tmp_path / "feature_repo"
    shutil.copytree(FEATURE_REPO, repo, ignore=shutil.ignore_patterns("feature_store.yaml", "__pycache__"))
    (repo / "quality_views.py").write_text(NEW_VIEW)
    (repo / "services.py").write_text((repo / "services.py").read_text() + RANKER_V2)
    items = pd.read_parquet(home.features / "item_attributes", columns=["item_id", "event_timestamp"])
    first = pd.to_datetime(items["event_timestamp"], utc=True).min() - pd.Timedelta(days=1)
    ids = sorted(items["item_id"].unique())
    table = pd.DataFrame({"item_id": ids, "return_rate": np.linspace(0.0, 0.5, len(ids)),
                          "event_timestamp": first})
    table["event_timestamp"] = table["event_timestamp"].astype("datetime64[us, UTC]")
    (home.features / "item_quality").mkdir(parents=True, exist_ok=True)
    table.to_parquet(home.features / "item_quality" / "part-0.parquet", index=False)
    run_feast(home, url, ["apply"], capture=True, repo=repo)
    materialize(home, url, views=["item_quality"])

    assert main(["--home", str(home.root), "train", "ranking", "--service", "ranker_v2", "--epochs", "1",
                 "--fraction", "0.5"]) == 0
    assert main(["--home", str(home.root), "train", "retrieval", "--tower-service", "two_tower_v2",
                 "--epochs", "1"]) == 0
    from retrieval.two_tower import TwoTowerArtifact

    tower = TwoTowerArtifact.load(latest(home, "two_tower"))
    assert tower.manifest["feature_service"] == "two_tower_v2"
    assert tower.layout.item_numeric[-1] == "item_quality__return_rate"
    teacher = Teacher.load(latest(home, "ranker"))
    assert teacher.feature_service == "ranker_v2"
    assert "item_quality__return_rate" in teacher.encoder.layout.row_numeric

    core = Core(home, RANKED, redis_url=url)
    try:
        assert "ranker_v2" in core.services() and "item_quality__return_rate" in core.items.columns
        served = core.models.current.teacher
        assert served.feature_service == "ranker_v2"
        assert core.models.current.retriever.two_tower.manifest["feature_service"] == "two_tower_v2"
        cols = {c: v[:20] for c, v in core.items.columns.items()}
        request = {"request_unix_s": 1_714_600_000}
        base, _ = served.score({}, cols, request)
        changed, _ = served.score({}, {**cols, "item_quality__return_rate": cols["item_quality__return_rate"] + 5.0},
                                  request)
        assert not np.allclose(base, changed)  # the served teacher reads the new feature
        from serving.validation import recommend_request

        r = core.recommend(recommend_request(RANKED, user_id=_buyer(home)[0], k=5))
        assert not r.degraded and len(r.items) == 5

        # one item catalogue: the retriever is built on the cache's (kept when the cache reloaded
        # for ranker_v2's view); a ranker-only view materialised again keeps it, a catalogue view
        # materialised again replaces it and the retriever follows
        catalogue = core.items.catalogue
        assert core.models.current.retriever.catalogue is catalogue
        later = datetime.now(UTC)
        materialize(home, url, views=["item_quality"], end=later)
        assert core.refresh() == {} and core.items.catalogue is catalogue
        materialize(home, url, views=["item_stats"], end=later)
        assert core.refresh().get("two_tower", "").startswith("loaded")
        assert core.items.catalogue is not catalogue and core.models.current.retriever.catalogue is core.items.catalogue
        assert not core.recommend(recommend_request(RANKED, user_id=_buyer(home)[0], k=5)).degraded
    finally:
        core.close()
