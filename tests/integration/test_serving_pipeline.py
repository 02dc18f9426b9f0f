"""The pipeline on a real server with the recall routes built from the feature tables: a
ranked answer, a click that brings the clicked item's neighbours into the next answer, a
corrupt model version refused on reload while the old one serves."""

from __future__ import annotations

import json

import pytest

from serving.config import Budgets, ServingConfig, Strategy
from serving.core import Core
from serving.proto import pb
from tests.integration.serving_fixtures import running_server, served_copy, stub_of
from vitrine.versions import models_dir

pytestmark = pytest.mark.integration

# no ranker is published in this home: the arm that ranks by recall alone answers undegraded
# budgets far above any stage's time: a loaded CI machine must not make these timing tests
RECALL_ONLY = ServingConfig(port=0, http_port=None, reload_seconds=3600, budgets=Budgets(*[60_000.0] * 6),
                            strategies=(Strategy("recall_only", 100, coarse=False, fine=False),))


@pytest.fixture(scope="module")
def served(small_home, tmp_path_factory):
    yield from served_copy(small_home, tmp_path_factory.mktemp("served-pipeline"))


@pytest.fixture(scope="module")
def server(served):
    home, url = served
    yield from running_server(home, url, RECALL_ONLY)


@pytest.fixture(scope="module")
def stub(server):
    yield from stub_of(server)


def ids(response) -> list[str]:
    return [i.item_id for i in response.items]


def test_recall_ranked_answer_is_sorted_filtered_and_labelled(stub):
    r = stub.Recommend(pb.RecommendRequest(user_id="u2", k=2), timeout=10)
    assert not r.degraded and r.ab_bucket == "recall_only"
    assert len(r.items) == 2 and "i1" not in ids(r)  # u2 clicked i1: seen
    assert [i.score for i in r.items] == sorted((i.score for i in r.items), reverse=True)
    assert all(i.routes for i in r.items)
    assert {"features", "recall", "adjust"} <= set(r.stage_ms)


def test_a_click_brings_the_clicked_items_neighbours(stub, server):
    before = stub.Recommend(pb.RecommendRequest(user_id="fresh-user", k=2), timeout=10)
    assert not any({"item_cf", "content"} & set(i.routes) for i in before.items)  # nothing to expand from
    stub.TrackEvents(pb.TrackEventsRequest(events=[pb.Event(user_id="fresh-user", item_id="i1",
                                                            event_type="click")]), timeout=10)
    server.core.consumers.drain()
    after = stub.Recommend(pb.RecommendRequest(user_id="fresh-user", k=2), timeout=10)
    assert "i1" not in ids(after)
    # i1's item-CF / content neighbours are now recalled from the real-time recent items
    assert any({"item_cf", "content"} & set(i.routes) for i in after.items)


def test_a_corrupt_version_is_refused_and_the_old_retriever_keeps_serving(stub, server, served):
    home, _ = served
    core = server.core
    serving_retriever = core.models.current.retriever
    assert serving_retriever is not None and core.models.current.versions["two_tower"] == "none"
    # a version whose file no longer matches its manifest's checksum, pointed at directly
    bad = models_dir(home, "two_tower") / "20990101T000000-bad"
    bad.mkdir(parents=True)
    (bad / "item_embeddings.npy").write_bytes(b"not what was trained")
    (bad / "manifest.json").write_text(json.dumps({
        "version": bad.name, "model": "two_tower", "checksums": {"item_embeddings.npy": "0" * 64}}))
    (models_dir(home, "two_tower") / "latest").write_text(bad.name + "\n")
    outcome = core.refresh()
    assert outcome["two_tower"].startswith("refused: BadModelVersion")
    assert "item_embeddings.npy" in outcome["two_tower"]
    assert core.models.current.retriever is serving_retriever  # the old one keeps serving
    r = stub.Recommend(pb.RecommendRequest(user_id="u2", k=2), timeout=10)
    assert not r.degraded and r.model_version == "two_tower=none"
    assert core.refresh() == {}  # the same bad pointer is not retried until it moves
    metrics = core.metrics.exposition().decode()
    assert 'vitrine_model_reloads_total{model="two_tower",result="refused"} 1.0' in metrics
    # the pointer moves back to nothing published: the retriever is rebuilt and swapped in
    (models_dir(home, "two_tower") / "latest").unlink()
    assert core.refresh() == {"two_tower": "loaded none"}
    assert core.models.current.retriever is not serving_retriever


def test_missing_rankers_degrade_the_arms_that_need_them(served):
    home, url = served
    core = Core(home, ServingConfig(port=0, http_port=None), redis_url=url)
    try:
        from serving.validation import recommend_request

        r = core.recommend(recommend_request(core.config, user_id="u2", k=2))
        assert r.degraded and r.degraded_reason in {"no_coarse_model:not_trained", "no_ranker_model:not_trained"}
        assert len(r.items) == 2
    finally:
        core.close()


def test_a_published_policy_switches_stages_off_for_every_arm(served):
    """No rankers are trained here: with the default policy every arm degrades (above); a
    published policy with coarse and fine off answers ranked by the recall blend."""
    from serving.validation import recommend_request
    from vitrine.policy import Policy
    from vitrine.versions import new_version_dir, publish, write_manifest

    home, url = served
    directory = new_version_dir(home, "pipeline")
    Policy(route_weights={"item_cf": 1.0, "content": 0.5, "hot": 0.1}, coarse=False, fine=False,
           reasons={"coarse": "off: test", "fine": "off: test"}).save(directory)
    write_manifest(directory, model="pipeline")
    publish(home, "pipeline", directory)
    core = Core(home, ServingConfig(port=0, http_port=None), redis_url=url)
    try:
        assert core.models.current.policy.route_weights["item_cf"] == 1.0
        for user in ("u2", "someone-new"):  # u1 engaged with all three items: nothing left to recall
            r = core.recommend(recommend_request(core.config, user_id=user, k=2))
            assert not r.degraded, r.degraded_reason
            assert f"pipeline={directory.name}" in r.model_version
            assert [i.score for i in r.items] == sorted((i.score for i in r.items), reverse=True)
    finally:
        core.close()
        (models_dir(home, "pipeline") / "latest").unlink()
