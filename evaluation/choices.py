"""What the pipeline evaluation chooses on a validation cut, and by what: the objective, the
recall blend (route weights and route settings, searched with PSO through the replay) and the
stage switches (each stage kept only if the objective does not fall), plus the warnings that
go into the report and the published policy."""

from __future__ import annotations

import numpy as np

from evaluation.metrics import evaluate
from evaluation.replay import Replay
from vitrine.policy import Policy

PRIMARY = "recall@20"
# what the blend search, the stage switches and the baselines' tuning maximise on validation
OBJECTIVES = ("recall@20", "recall+ndcg@20")


def objective_of(metrics: dict[str, float], objective: str = PRIMARY) -> float:
    """The validation score to maximise: Recall@20, or the mean of Recall@20 and NDCG@20."""
    if objective == "recall+ndcg@20":
        return (metrics["recall@20"] + metrics["ndcg@20"]) / 2
    if objective != PRIMARY:
        raise ValueError(f"unknown objective {objective!r}; use one of {', '.join(OBJECTIVES)}")
    return metrics[PRIMARY]


# serving order: each stage is tried on top of the ones kept before it
STAGES = (("recall", "recall (tuned blend)"), ("coarse", "+ coarse (FM student)"),
          ("fine", "+ fine (MMoE teacher)"), ("diversity", "+ adjust (diversity)"))


def score(lists: dict[str, list[str]], held: dict[str, set[str]], ks, n_items: int, ms=None,
          degraded: int = 0) -> dict[str, float]:
    out: dict[str, float] = {"degraded": degraded}
    for k in ks:
        out.update(evaluate(lists, held, k, n_items))
    if ms is not None and len(ms):
        out["ms_p50"], out["ms_p95"] = float(np.percentile(ms, 50)), float(np.percentile(ms, 95))
    return out


# neighbour-route settings searched with the blend: how many recent items a route expands
# (the user features keep 20), how fast their weight decays with recency, and the weight of
# each bought item beyond them (the user features keep 50; 0 = recent items only)
NEIGHBOUR_DIMS = (("recent", 1, 20, True), ("decay", 0.5, 1.0, False), ("bought", 0.0, 1.0, False))
# the swarm starts around the best start (sd = this × each range), not uniformly: uniform
# particles in 11 dimensions never came near a one-route corner (MovieLens, user split: 31 PSO
# trials all below item-CF alone)
BLEND_SPREAD = 0.2
# the hot route's popularity signal, searched as an index into this list
HOT_SIGNALS = ("heat", "engaged_1d", "engaged_7d", "engaged_30d", "clicks_7d", "clicks_30d")


def blend_policy(params: dict, **stages: bool) -> Policy:
    """A policy from a flat search point: `route` → weight, `route.setting` → route setting."""
    weights = {k: v for k, v in params.items() if "." not in k}
    settings: dict[str, dict[str, float]] = {}
    for key, value in params.items():
        if "." in key:
            route, attr = key.split(".", 1)
            if attr == "signal" and not isinstance(value, str):
                value = HOT_SIGNALS[int(value)]
            settings.setdefault(route, {})[attr] = value
    return Policy(route_weights=weights, route_params=settings, **stages)


def tune_blend(replay: Replay, users, held, exclude, trials: int, seed: int, log,
               objective_name: str = PRIMARY) -> tuple[dict, list[dict]]:
    """One weight in [0, 1] per route (plus the neighbour routes' settings), maximising
    Recall@20 of the recall stage: equal weights and each route on its own first (so the blend
    is never below the best single route on validation), then PSO from the best of those with
    the rest of the budget."""
    from training.pso import Dimension, SearchSpace, pso_search

    routes = replay.routes
    neighbour = [r for r in routes if type(replay.base.retriever.routes[r]).__name__ == "NeighbourRoute"]
    dims = [Dimension(r, 0.0, 1.0) for r in routes]
    dims += [Dimension(f"{r}.{a}", lo, hi, integer=i) for r in neighbour for a, lo, hi, i in NEIGHBOUR_DIMS]
    defaults = {f"{r}.{a}": getattr(replay.base.retriever.routes[r], a) for r in neighbour
                for a, *_ in NEIGHBOUR_DIMS}
    if "hot" in routes:
        dims.append(Dimension("hot.signal", 0, len(HOT_SIGNALS) - 1, integer=True))
        defaults["hot.signal"] = 0
    space = SearchSpace(tuple(dims))
    n_items = replay.catalogue.size

    def objective(params: dict, _stopper=None) -> float:
        lists, _, _ = replay.answer(users, blend_policy(params, coarse=False, fine=False, diversity=False), 20,
                                    exclude)
        return objective_of(evaluate(lists, held, 20, n_items), objective_name)

    starts = [{**dict.fromkeys(routes, 1.0), **defaults},
              *({**{r: float(r == one) for r in routes}, **defaults} for one in routes)]
    tried = [{"params": p, "score": objective(p), "method": "start"} for p in starts[:max(trials, 1)]]
    best = max(tried, key=lambda t: t["score"])
    left = trials - len(tried)
    if left > 1:  # PSO re-scores its start as its first trial
        result = pso_search(objective, space, left, seed=seed, start=best["params"], spread=BLEND_SPREAD)
        tried += [{"params": t.params, "score": t.score, "method": "pso"} for t in result.trials[1:]]
        best = max(tried, key=lambda t: t["score"])
    single = max(tried[1:len(starts)], key=lambda t: t["score"], default=tried[0])
    log(f"   recall blend: {len(tried)} trials, best validation {objective_name} {best['score']:.4f} "
        f"(equal weights {tried[0]['score']:.4f}; best single route {single['score']:.4f})")
    return best["params"], tried


# the rankers' share of their stage's score tried on validation (1.0 = the ranker alone); the
# rest is the recall score, so a ranker can re-order recall's list without discarding it
RANKER_SHARES = (0.25, 0.5, 0.75, 1.0)


def stage_policies(params: dict, on: dict[str, bool], shares: dict[str, float] | None = None
                   ) -> dict[str, Policy]:
    """Each stage added to the ones already switched on (`on`), in serving order, the rankers
    at their `shares` of the stage's score (default 1.0)."""
    w = {"coarse_weight": 1.0, "fine_weight": 1.0, **{f"{k}_weight": v for k, v in (shares or {}).items()}}
    return {"recall": blend_policy(params, coarse=False, fine=False, diversity=False),
            "coarse": blend_policy(params, coarse=True, fine=False, diversity=False, **w),
            "fine": blend_policy(params, coarse=on["coarse"], fine=True, diversity=False, **w),
            "diversity": blend_policy(params, coarse=on["coarse"], fine=on["fine"], diversity=True, **w)}


def decide_stages(replay: Replay, users, held, exclude, ks, weights: dict, rankers: bool, log,
                  objective_name: str = PRIMARY
                  ) -> tuple[dict[str, bool], dict[str, str], dict[str, dict], dict[str, float]]:
    """Add coarse, fine and adjust one at a time; keep a stage only if it does not lower the
    validation objective below the stage before it. A ranker stage is tried at each of
    `RANKER_SHARES` of its stage's score and judged at its best share. Returns the switches,
    the reasons, the metrics per stage and the rankers' shares."""
    n_items = replay.catalogue.size
    on = {"coarse": False, "fine": False, "diversity": False}
    shares = {"coarse": 1.0, "fine": 1.0}
    reasons: dict[str, str] = {}
    metrics: dict[str, dict] = {}
    for stage, label in STAGES:
        if stage in ("coarse", "fine") and not rankers:
            reasons[stage] = "off: no ranker trained for this evaluation (--no-rankers)"
            continue
        tried = {}
        for share in (RANKER_SHARES if stage in shares else (1.0,)):
            policy = stage_policies(weights, on, {**shares, stage: share} if stage in shares else shares)[stage]
            lists, ms, degraded = replay.answer(users, policy, max(ks), exclude)
            tried[share] = score(lists, held, ks, n_items, ms, degraded)
            if degraded:
                log(f"   WARNING: {degraded} degraded answers for {label} (share {share})")
        share = max(tried, key=lambda s: (objective_of(tried[s], objective_name), s))
        metrics[label] = tried[share]
        if stage == "recall":
            before, before_label = objective_of(metrics[label], objective_name), label
            continue
        now = objective_of(metrics[label], objective_name)
        keep = now >= before
        on[stage] = keep
        at = ""
        if stage in shares:
            shares[stage] = share if keep else 1.0
            at = f" at {share:.2f} of the stage's score (tried " + ", ".join(
                f"{s:.2f}: {objective_of(m, objective_name):.4f}" for s, m in tried.items()) + ")"
        reasons[stage] = (f"{'on' if keep else 'off'}: validation {objective_name} {now:.4f} with it{at} vs "
                          f"{before:.4f} for '{before_label}'")
        log(f"   {label}: {reasons[stage]}")
        if keep:
            before, before_label = now, label
    return on, reasons, metrics, shares


def served_label(on: dict[str, bool]) -> str:
    last = "recall"
    for stage, _ in STAGES[1:]:
        if on.get(stage):
            last = stage
    return dict(STAGES)[last]


def warnings_for(metrics: dict, routes: dict) -> list[str]:
    out = []
    pop = metrics["popularity"][PRIMARY]
    if metrics["served"][PRIMARY] < pop:
        out.append(f"the served answer loses to popularity on validation ({PRIMARY} "
                   f"{metrics['served'][PRIMARY]:.4f} vs {pop:.4f})")
    for name, cover in routes.items():
        if cover["users"] < 0.5:
            out.append(f"recall route '{name}' returns nothing for {1 - cover['users']:.0%} of validation users")
    return out
