"""`vitrine evaluate pipeline` end to end on a real public log (the shipped Taobao extract:
157 users' full histories, clicks / carts / favourites / purchases): real Spark, Feast, Redis
and trainers per cut. Nothing after a cut reaches its home; the replay answers exactly as
`vitrine recommend` does for the same user and state; the report and the published policy
hold what serving needs."""

from __future__ import annotations

import pandas as pd
import pytest

from evaluation.pipeline import PipelineSettings, evaluate_pipeline, load_log
from evaluation.replay import BuildSettings, Replay, cut_home, feast_project
from evaluation.split import cuts
from vitrine.config import Home
from vitrine.policy import Policy
from vitrine.versions import latest, publish

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SETTINGS = PipelineSettings(max_users=60, trials=3, build=BuildSettings(two_tower_epochs=1, ranker_epochs=1,
                                                                         student_epochs=1, ranker_fraction=0.5))


@pytest.fixture(scope="module")
def evaluated(spark, tmp_path_factory):
    from vitrine.data.convert import convert, shipped
    from vitrine.data.ingest import ingest
    from vitrine.online.redis_local import ManagedRedis, redis_url

    root = tmp_path_factory.mktemp("pipeline-eval")
    _, paths = convert("taobao", shipped("taobao"), root / "csv")
    home = Home(root / "home")
    ingest(home, events=[paths["events"]], items=[paths["items"]])
    url = redis_url(home)
    try:
        report = evaluate_pipeline(home, url, SETTINGS, log=lambda *_: None)
        yield home, url, report
    finally:
        ManagedRedis(home.redis_dir).stop()


def test_no_cut_home_holds_anything_after_its_cut(evaluated):
    from vitrine.data.eventlog import EventLog

    home, _, _ = evaluated
    _, frame = load_log(home)
    for cut in cuts(frame, SETTINGS.split, SETTINGS.fraction):
        sub = cut_home(home, cut)
        times = pd.to_datetime(EventLog(sub.events).read(columns=["event_time"]).column(0).to_pandas(), utc=True)
        assert len(times) == len(cut.events)
        assert times.max() < pd.Timestamp(cut.time)
        samples = pd.read_parquet(sub.features / "samples", columns=["event_timestamp"])
        assert pd.to_datetime(samples["event_timestamp"], utc=True).max() < pd.Timestamp(cut.time)
        # no held-out engagement is in the cut's log
        held = {(u, i) for u, items in cut.held_out.items() for i in items}
        log = EventLog(sub.events).read(columns=["user_id", "item_id"]).to_pandas()
        assert not held & set(zip(log["user_id"], log["item_id"], strict=True))


def test_report_scores_every_stage_and_baseline(evaluated):
    home, _, report = evaluated
    for cut in (report.validation, report.test):
        assert cut.users > 0
        for method in ("recall (tuned blend)", "served", "popularity", "item_knn", "ease", "als"):
            row = cut.metrics[method]
            for k in report.ks:
                assert 0.0 <= row[f"recall@{k}"] <= 1.0 and 0.0 <= row[f"ndcg@{k}"] <= 1.0
            assert row["recall@10"] <= row["recall@20"] <= row["recall@50"]
        assert set(cut.routes) >= {"item_cf", "hot", "new", "category"}
    out = home.root / "reports" / "pipeline"
    assert (out / "pipeline-global.md").read_text().count("| popularity |") == 2
    assert (out / "pipeline-global.png").stat().st_size > 0
    # every stage switch has its reason; the served row is the published combination
    assert set(report.policy["reasons"]) == {"coarse", "fine", "diversity"}


def test_published_policy_is_what_serving_loads(evaluated):
    from serving.metrics import Metrics
    from serving.models import ModelSet

    home, _, report = evaluated
    directory = latest(home, "pipeline")
    assert directory.name == report.policy["version"]
    models = ModelSet(home, Metrics(), loaders=None)
    models.reload()
    assert models.current.policy == Policy.load(directory)
    assert models.current.policy.route_weights == report.policy["route_weights"]


def test_replay_answers_as_vitrine_recommend_does(evaluated, tmp_path, monkeypatch):
    import shutil

    from serving.batch import recommend_batch
    from serving.config import Budgets, ServingConfig, Strategy

    home, url, report = evaluated
    _, frame = load_log(home)
    _, test = cuts(frame, SETTINGS.split, SETTINGS.fraction)
    sub = cut_home(home, test)
    # the published policy, published into the test cut's home too, so `vitrine recommend` serves it
    target = sub.root / "models" / "pipeline" / report.policy["version"]
    shutil.copytree(latest(home, "pipeline"), target)
    publish(sub, "pipeline", target)
    users = sorted(test.held_out)[:15]
    (tmp_path / "users.txt").write_text("\n".join(users) + "\n")
    config = ServingConfig(http_port=None, budgets=Budgets(*[60_000.0] * 6), redis_timeout_s=5.0,
                           strategies=(Strategy("replay", 100, coarse=True, fine=True),))
    # `vitrine recommend` on the cut's home, against the Redis the cut was materialised into
    # (a home without $VITRINE_REDIS_URL would start its own, empty one)
    monkeypatch.setenv("VITRINE_REDIS_URL", url)
    with feast_project(f"vitrine_eval_{test.split}_{test.name}"):
        summary = recommend_batch(sub, config, tmp_path / "users.txt", 20, tmp_path / "recs.csv")
    assert " 0 degraded answers" in summary
    served = pd.read_csv(tmp_path / "recs.csv", dtype=str).groupby("user_id")["item_id"].agg(list).to_dict()
    replay = Replay(sub, test, url)
    try:
        replay.request_unix_s = 0  # "now", as `vitrine recommend` asks
        lists, _, degraded = replay.answer(users, Policy.load(target), 20, {})
    finally:
        replay.close()
    assert degraded == 0
    assert lists == {u: served.get(u, []) for u in users}
