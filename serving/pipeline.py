"""The Recommend pipeline: features → recall → coarse (FM student) → fine (MMoE teacher) →
adjust, each stage timed against its budget inside the request deadline.

A stage that raises, ends past its budget or past the deadline, or finds Redis down, ends
the pipeline: the answer is then hot/new items from the item cache, marked degraded with the
reason — never an error, never a crash. A stage that does not end at all is abandoned at the
deadline by `serving.watchdog` (the server runs each request's pipeline on one of its workers
and answers `<stage>_hung` from `Progress`); Redis calls also have a short socket timeout.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.api import RankedItem, Recommendation, RecommendRequest
from serving.config import ServingConfig, Strategy
from serving.encoded import encoded
from serving.features import UserFeatures
from serving.items import ItemCache
from serving.metrics import Metrics
from serving.models import Loaded
from serving.scoring import diversify, fuse
from vitrine.data.schemas import DEVICES
from vitrine.online.redis_local import redis_unavailable

log = logging.getLogger("serving.pipeline")

RT_RECENT = "user_realtime__rt_recent_items"
RT_BOUGHT = "user_realtime__rt_bought_items"
# never recommended again: what the user bought or engaged with (snapshot and real time)
BLOCKING = (RT_BOUGHT, RT_RECENT, "user_preferences__bought_items", "user_preferences__recent_items")


# item columns the fine stage reads besides the teacher's own (adjust uses the cache's codes)
FINE_COLUMNS = ("item_attributes__price",)


def _model_inputs(items: ItemCache, model: Any, rows: np.ndarray,
                  extra: tuple[str, ...] = ()) -> tuple[dict[str, np.ndarray], Any]:
    """(item columns, item part) for a model's `score`: the rows of its precomputed item table
    and the few columns it still reads per request, or every column when no table is ready."""
    table = encoded(items, model)
    if table is None:
        return items.take(rows), None
    return items.take(rows, {*model.request_columns, *extra}), table.take(rows)


def bucket_of(user_id: str) -> int:
    """A stable bucket in [0, 100) from the user id (same user, same bucket, every process)."""
    return int.from_bytes(hashlib.blake2b(user_id.encode(), digest_size=8).digest(), "little") % 100


def strategy_for(config: ServingConfig, user_id: str) -> Strategy:
    b, edge = bucket_of(user_id), 0
    for s in config.strategies:
        edge += s.share
        if b < edge:
            return s
    return config.strategies[-1]


class Degrade(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Progress:
    """Where a request's pipeline is, for whoever abandons it (`serving.watchdog`)."""

    deadline: float = 0.0  # perf_counter seconds
    stage: str = "features"
    user: UserFeatures | None = None
    abandoned: bool = False  # then the pipeline's own end counts nothing


class _Clock:
    """Runs stages, records their time, turns failures and lateness into `Degrade`."""

    def __init__(self, config: ServingConfig, metrics: Metrics, progress: Progress) -> None:
        self.budgets, self.metrics, self.deadline = config.budgets, metrics, progress.deadline
        self.progress = progress
        self.ms: dict[str, float] = {}

    def run(self, stage: str, fn: Callable[..., Any], *args: Any) -> Any:
        self.progress.stage = stage
        t0 = time.perf_counter()
        try:
            out = fn(*args)
        except Degrade:
            raise
        except Exception as e:
            self._record(stage, t0)
            if redis_unavailable(e):
                raise Degrade("redis_unavailable") from e
            log.exception("stage failed", extra={"stage": stage})
            raise Degrade(f"{stage}_failed") from e
        elapsed = self._record(stage, t0)
        if elapsed > getattr(self.budgets, stage) or time.perf_counter() > self.deadline:
            raise Degrade(f"{stage}_late")
        return out

    def _record(self, stage: str, t0: float) -> float:
        seconds = time.perf_counter() - t0
        self.metrics.stage_seconds.labels(stage).observe(seconds)
        self.ms[stage] = seconds * 1000
        return seconds * 1000


@dataclass
class Context:
    """What one request works with: a consistent snapshot of models and item cache."""

    config: ServingConfig
    metrics: Metrics
    models: Loaded
    items: ItemCache
    read_user: Callable[[str], UserFeatures]


def _blocked(user: UserFeatures | None, req: RecommendRequest) -> set[str]:
    blocked = set(req.exclude)
    if user is not None:
        for name in BLOCKING:
            blocked.update(user.values.get(name) or ())
        blocked.update(user.shown)
    return blocked


def request_features(req: RecommendRequest) -> dict[str, int]:
    return {"request_unix_s": req.request_unix_s or int(time.time()),
            "device_code": DEVICES.index(req.device) if req.device in DEVICES else -1}


def fallback_items(ctx: Context, req: RecommendRequest, user: UserFeatures | None) -> list[RankedItem]:
    blocked = _blocked(user, req)
    return [RankedItem(item, score, routes=[route]) for item, score, route in ctx.items.fallback(req.k, blocked)]


def deadline_of(config: ServingConfig, timeout_s: float | None) -> float:
    """The request's deadline (perf_counter seconds): the total budget, or the caller's
    remaining time when shorter."""
    budget = config.budgets.total / 1000
    return time.perf_counter() + (min(budget, timeout_s) if timeout_s else budget)


def recommend(ctx: Context, req: RecommendRequest, timeout_s: float | None = None,
              with_features: bool = False, progress: Progress | None = None) -> Recommendation:
    """The pipeline for one request; always answers (with the user's features read, known
    values only, when `with_features`: the exposure log's sample)."""
    progress = progress or Progress(deadline_of(ctx.config, timeout_s))
    clock = _Clock(ctx.config, ctx.metrics, progress)
    strategy = strategy_for(ctx.config, req.user_id)
    reason = ""
    try:
        progress.user = clock.run("features", ctx.read_user, req.user_id)
        items = _ranked(ctx, clock, strategy, req, progress.user)
    except Degrade as d:
        reason = d.reason
        t0 = time.perf_counter()
        items = fallback_items(ctx, req, progress.user)
        clock.ms["fallback"] = (time.perf_counter() - t0) * 1000
    return answer(ctx, req, strategy, items, reason, clock.ms, progress, with_features)


def abandoned(ctx: Context, req: RecommendRequest, progress: Progress, with_features: bool,
              reason: str | None = None) -> Recommendation:
    """The answer for a request whose pipeline did not end by its deadline: hot/new (without
    what the user bought, when the features stage had ended), `<stage>_hung`."""
    progress.abandoned = True
    t0 = time.perf_counter()
    items = fallback_items(ctx, req, progress.user)
    ms = {"fallback": (time.perf_counter() - t0) * 1000}
    return answer(ctx, req, strategy_for(ctx.config, req.user_id), items, reason or f"{progress.stage}_hung", ms,
                  progress, with_features, counted=True)


def answer(ctx: Context, req: RecommendRequest, strategy: Strategy, items: list[RankedItem], reason: str,
           stage_ms: dict[str, float], progress: Progress, with_features: bool,
           counted: bool = False) -> Recommendation:
    """The Recommendation, counted in the metrics unless the request was abandoned (its
    abandoning answer counts it)."""
    if counted or not progress.abandoned:
        if reason:
            ctx.metrics.degraded.labels(reason).inc()
            log.warning("degraded answer", extra={"request_id": req.request_id, "reason": reason,
                                                   "user_id": req.user_id})
        ctx.metrics.requests.labels(strategy.name).inc()
    user = progress.user
    features = ({k: v for k, v in user.values.items() if v is not None}
                if with_features and user is not None else None)
    return Recommendation(items=items, model_version=ctx.models.version_string(), ab_bucket=strategy.name,
                          request_id=req.request_id, degraded=bool(reason), degraded_reason=reason,
                          stage_ms=stage_ms, features=features)


def _ranked(ctx: Context, clock: _Clock, strategy: Strategy, req: RecommendRequest,
            user: UserFeatures) -> list[RankedItem]:
    models, config = ctx.models, ctx.config
    policy = models.policy  # stages the published policy switched off run in no arm
    coarse_on, fine_on = strategy.coarse and policy.coarse, strategy.fine and policy.fine
    needed = {"two_tower": models.retriever, "coarse": models.student if coarse_on else True,
              "ranker": models.teacher if fine_on else True}
    for model, obj in needed.items():
        if obj is None:
            raise Degrade(f"no_{model}_model:{models.problems.get(model, 'not_loaded')}")
    blocked = _blocked(user, req)

    def recall() -> list:
        values = user.values
        # real-time clicks go in front of the recent items (their neighbours rise); real-time
        # purchases join the bought filter; seen = the recent items (the retriever's default)
        state = models.retriever.user_state(req.user_id, values, extra_recent=values.get(RT_RECENT) or (),
                                            bought=values.get(RT_BOUGHT) or ())
        return models.retriever.recall(state, config.recall_k, exclude=sorted(req.exclude),
                                       weights=policy.route_weights or None, params=policy.route_params or None)

    candidates = clock.run("recall", recall)
    if not candidates:
        raise Degrade("recall_empty")
    recall_scores = np.fromiter((c.score for c in candidates), dtype=np.float64, count=len(candidates))
    request = request_features(req)
    # the retriever is built on the cache's catalogue: a candidate's row is its cache row (by id
    # in the moment between an item-cache reload and the retriever's)
    rows = (np.fromiter((c.row for c in candidates), dtype=np.int64, count=len(candidates))
            if models.retriever.catalogue is ctx.items.catalogue else ctx.items.rows([c.item_id for c in candidates]))

    if coarse_on:
        def coarse() -> np.ndarray:
            items, part = _model_inputs(ctx.items, models.student, rows)
            scores = np.asarray(models.student.score(user.values, items, request, item_part=part), dtype=np.float64)
            keep = max(config.coarse_k, req.k)
            return np.argsort(-fuse(recall_scores, scores, policy.coarse_weight), kind="stable")[:keep], scores

        order, coarse_scores = clock.run("coarse", coarse)
    else:
        order, coarse_scores = np.arange(min(len(candidates), max(config.coarse_k, req.k))), None

    rows = rows[order]
    if fine_on:
        features, part = _model_inputs(ctx.items, models.teacher, rows, FINE_COLUMNS)

        def fine() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            p_ctr, p_cvr = models.teacher.score(user.values, features, request, item_part=part)
            p_ctr, p_cvr = np.asarray(p_ctr, dtype=np.float64), np.asarray(p_cvr, dtype=np.float64)
            price = np.nan_to_num(np.asarray(features.get("item_attributes__price", np.zeros(len(rows))),
                                             dtype=np.float64), nan=0.0).clip(min=0)
            value = p_ctr * (1 + strategy.value_weight * p_cvr * np.log1p(price))
            return fuse(recall_scores[order], value, policy.fine_weight), p_ctr, p_cvr

        final, p_ctr, p_cvr = clock.run("fine", fine)
    else:
        final = (fuse(recall_scores[order], 1.0 / (1.0 + np.exp(-coarse_scores[order])), policy.coarse_weight)
                 if coarse_scores is not None else recall_scores[order])
        p_ctr = p_cvr = np.zeros(len(order))

    def adjust() -> list[RankedItem]:
        ids = [candidates[i].item_id for i in order.tolist()]
        online = np.ones(len(rows), dtype=bool) if not ctx.items.size else \
            np.where(rows >= 0, ctx.items.online[np.maximum(rows, 0)], True)
        seen: set[str] = set()
        keep = []
        for j, item in enumerate(ids):
            if item in blocked or item in seen or not online[j] or not math.isfinite(final[j]):
                continue
            seen.add(item)
            keep.append(j)
        keep = np.array(keep, dtype=np.int64)
        scores = np.maximum(final[keep], 1e-12)
        merchants, categories = ctx.items.codes(rows[keep])
        decays = (config.diversity.merchant_decay, config.diversity.category_decay) if policy.diversity else (1.0, 1.0)
        picks, adjusted = diversify(scores, merchants, categories, req.k, *decays)
        out = []
        for p, s in zip(picks.tolist(), adjusted.tolist(), strict=True):
            j = int(keep[p])
            c = candidates[int(order[j])]
            out.append(RankedItem(c.item_id, float(s), float(p_ctr[j]), float(p_cvr[j]), list(c.routes)))
        if len(out) < req.k:  # backfill with hot/new, scored below everything ranked
            floor = out[-1].score if out else 1.0
            taken = blocked | {i.item_id for i in out}
            for item, score, route in ctx.items.fallback(req.k - len(out), taken):
                out.append(RankedItem(item, floor * 0.5 * score, routes=[route]))
        return out

    return clock.run("adjust", adjust)
