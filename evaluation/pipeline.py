"""`vitrine evaluate pipeline`: the served pipeline, stage by stage, against tuned baselines,
on a time split of the home's own log — tuned on a validation cut, reported on a test cut.

1. `evaluation.split`: a validation cut and a test cut (one global time by default, or each
   user's last fraction with `--split user`).
2. Validation cut (`evaluation.replay`): features, relation tables and models built from the
   events before it only, through Spark, Feast and the trainers; answers through `Core`.
   - the recall blend (a weight per route) is searched with PSO on Recall@20;
   - each stage is then added in serving order — coarse (FM student), fine (MMoE teacher),
     adjust (diversity) — and kept on only if Recall@20 does not fall below the stage before
     it; the reason for each switch is recorded;
   - popularity, item-KNN, EASE and ALS are tuned over their grids (`evaluation.baselines`,
     no more trials each than the blend search gets).
3. Test cut: rebuilt from everything before it; every stage, the published combination
   ("served") and the tuned baselines answer the same users. Nothing is tuned here.
4. The policy (blend + switches + reasons + warnings) is published as
   `<home>/models/pipeline/<version>/` for serving; a served answer that loses to popularity
   on validation is a warning in the policy (logged at load) and in the report.

Every method answers the same users (those with history before the cut and new items after
it) with the same exclusions: the user's items before the cut are passed as the request's
`exclude`, as a caller that knows them would, and blocked for the baselines.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.baselines import GRIDS
from evaluation.choices import (
    PRIMARY,
    STAGES,
    blend_policy,
    decide_stages,
    objective_of,
    score,
    served_label,
    stage_policies,
    tune_blend,
    warnings_for,
)
from evaluation.metrics import evaluate
from evaluation.replay import BuildSettings, Replay, build
from evaluation.split import POSITIVE_TYPES, Cut, cuts
from vitrine.config import Home
from vitrine.policy import Policy

DEFAULT_KS = (10, 20, 50)
@dataclass(frozen=True)
class PipelineSettings:
    split: str = "global"
    fraction: float = 0.2
    ks: tuple[int, ...] = DEFAULT_KS
    max_users: int = 1000
    trials: int = 40  # evaluations of the recall blend (starts + PSO); each baseline gets at most this many
    seed: int = 0
    objective: str = PRIMARY  # see OBJECTIVES
    build: BuildSettings = field(default_factory=BuildSettings)


@dataclass
class CutResult:
    cut: str
    users: int
    cold_users: int  # held-out users with no history before the cut (not evaluated: no method knows them)
    metrics: dict[str, dict[str, float]]  # method → metric → value
    routes: dict[str, dict] = field(default_factory=dict)


@dataclass
class PipelineReport:
    home: str
    split: str
    fraction: float
    ks: tuple[int, ...]
    policy: dict
    baselines: dict[str, dict]  # name → tuned params
    validation: CutResult | None = None
    test: CutResult | None = None
    blend_trials: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def verdicts(self) -> list[str]:
        """Served vs the best tuned baseline on the test cut, per headline metric."""
        out = []
        m = self.test.metrics
        for metric in (PRIMARY, "ndcg@20"):
            best = max(GRIDS, key=lambda b: m[b][metric])
            ratio = m["served"][metric] / m[best][metric] if m[best][metric] else float("inf")
            word = "beats" if ratio >= 1.0 else "LOSES to"
            out.append(f"served {metric} {m['served'][metric]:.4f} {word} the best baseline ({best}, "
                       f"{m[best][metric]:.4f}): {ratio:.3f}x")
        return out


# --- data ------------------------------------------------------------------------------------

def load_log(home: Home) -> tuple[object, pd.DataFrame]:
    """(the whole event log as Arrow, its split columns as pandas with `_row`)."""
    from vitrine.data.eventlog import EventLog
    from vitrine.errors import VitrineError

    table = EventLog(home.events).read()
    if table.num_rows == 0:
        raise VitrineError(f"no event log in {home.events}: ingest events first")
    frame = table.select(["user_id", "item_id", "event_type", "event_time"]).to_pandas()
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True)
    frame["_row"] = np.arange(len(frame))
    return table, frame


def history(cut: Cut) -> dict[str, list[str]]:
    pos = cut.events[cut.events["event_type"].isin(POSITIVE_TYPES)]
    return pos.groupby("user_id")["item_id"].agg(lambda s: list(dict.fromkeys(s))).to_dict()


@dataclass
class Audience:
    """Who a cut is scored on, and what each of them already had (excluded for every method)."""

    users: list[str]  # with history before the cut and held-out items (a seeded sample)
    cold: int  # held-out users without history: counted, not scored
    held: dict[str, set[str]]
    known: dict[str, list[str]]  # every user's positives before the cut, oldest first


def audience(cut: Cut, max_users: int, seed: int) -> Audience:
    known = history(cut)
    warm = sorted(u for u in cut.held_out if u in known)
    cold = len(cut.held_out) - len(warm)
    if len(warm) > max_users:
        warm = sorted(np.random.default_rng(seed).choice(warm, max_users, replace=False).tolist())
    return Audience(warm, cold, {u: cut.held_out[u] for u in warm}, known)


# --- baselines -------------------------------------------------------------------------------

def _interactions(cut: Cut, row_of: dict[str, int]) -> pd.DataFrame:
    pos = cut.events[cut.events["event_type"].isin(POSITIVE_TYPES) & cut.events["item_id"].isin(row_of)]
    return pd.DataFrame({"user": pos["user_id"].to_numpy(), "item": pos["item_id"].map(row_of).to_numpy(np.int64),
                         "t": pos["event_time"].to_numpy()})


def make_baseline(cls, interactions: pd.DataFrame, catalogue, params: dict):
    extra = {"categories": catalogue.category} if getattr(cls, "uses_categories", False) else {}
    return cls(interactions, catalogue.size, **extra, **params)


def baseline_lists(model, catalogue, users, known: dict[str, list[str]], k: int):
    lists, ms = {}, []
    for user in users:
        rows = catalogue.rows(known.get(user, []))
        blocked = ~catalogue.online.copy()
        blocked[rows] = True
        t = time.perf_counter()
        picked = model.recommend(rows, blocked, k)
        ms.append((time.perf_counter() - t) * 1000)
        lists[user] = [str(catalogue.ids[r]) for r in picked]
    return lists, ms


def tune_baselines(cut: Cut, catalogue, users, held, known, budget: int, log,
                   objective_name: str = PRIMARY) -> dict[str, dict]:
    inter = _interactions(cut, catalogue.row_of)
    tuned = {}
    for name, (cls, grid) in GRIDS.items():
        best, best_score = None, -1.0
        for params in grid[:budget]:
            lists, _ = baseline_lists(make_baseline(cls, inter, catalogue, params), catalogue, users, known, 20)
            s = objective_of(evaluate(lists, held, 20, catalogue.size), objective_name)
            if s > best_score:
                best, best_score = params, s
        tuned[name] = best
        log(f"   {name}: {min(len(grid), budget)} settings, best validation {objective_name} {best_score:.4f} "
            f"with {best}")
    return tuned


def run_baselines(cut: Cut, catalogue, users, held, known, tuned: dict[str, dict], ks) -> dict[str, dict]:
    inter = _interactions(cut, catalogue.row_of)
    out = {}
    for name, (cls, _) in GRIDS.items():
        lists, ms = baseline_lists(make_baseline(cls, inter, catalogue, tuned[name]), catalogue, users, known,
                                   max(ks))
        out[name] = score(lists, held, ks, catalogue.size, ms)
    return out


# --- the whole evaluation --------------------------------------------------------------------

def evaluate_pipeline(home: Home, redis_url: str, settings: PipelineSettings = PipelineSettings(), *,
                      out: Path | None = None, publish_policy: bool = True,
                      log: Callable[[str], None] = print) -> PipelineReport:
    from evaluation.pipeline_report import write_report

    started = time.perf_counter()
    table, frame = load_log(home)
    val, test = cuts(frame, settings.split, settings.fraction)
    ks = tuple(sorted(set(settings.ks) | {20}))
    report = PipelineReport(str(home.root), settings.split, settings.fraction, ks, {}, {})

    log(f"== validation: {val.describe()}")
    replay = Replay(build(home, val, table, redis_url, settings.build, log=log), val, redis_url)
    a = audience(val, settings.max_users, settings.seed)
    users, held, known, exclude = a.users, a.held, a.known, a.known
    try:
        weights, report.blend_trials = tune_blend(replay, users, held, exclude, settings.trials, settings.seed, log,
                                                  settings.objective)
        on, reasons, metrics, shares = decide_stages(replay, users, held, exclude, ks, weights,
                                                     settings.build.rankers, log, settings.objective)
        report.baselines = tune_baselines(val, replay.catalogue, users, held, known, settings.trials, log,
                                          settings.objective)
        metrics.update(run_baselines(val, replay.catalogue, users, held, known, report.baselines, ks))
        routes = replay.route_coverage(users, exclude)
    finally:
        replay.close()
    served = served_label(on)
    metrics["served"] = metrics[served]
    report.validation = CutResult(val.name, len(users), a.cold, metrics, routes)
    warnings = warnings_for(metrics, routes)
    chosen = blend_policy(weights)
    policy = Policy(route_weights=chosen.route_weights, route_params=chosen.route_params, coarse=on["coarse"],
                    fine=on["fine"], diversity=on["diversity"], coarse_weight=shares["coarse"],
                    fine_weight=shares["fine"], reasons=reasons, warnings=tuple(warnings),
                    validation={"split": settings.split, "cut": str(val.time or "per user"), "users": len(users),
                                PRIMARY: metrics["served"][PRIMARY], "ndcg@20": metrics["served"]["ndcg@20"],
                                "baselines": {b: metrics[b][PRIMARY] for b in GRIDS}})
    report.policy = policy.to_dict()
    for w in warnings:
        log(f"   WARNING: {w}")

    log(f"== test: {test.describe()}")
    replay = Replay(build(home, test, table, redis_url, settings.build, log=log), test, redis_url)
    a = audience(test, settings.max_users, settings.seed)
    users, held, known, exclude = a.users, a.held, a.known, a.known
    try:
        metrics = {}
        for stage, label in STAGES:
            if stage in ("coarse", "fine") and not settings.build.rankers:
                continue
            lists, ms, degraded = replay.answer(users, stage_policies(weights, on, shares)[stage], max(ks), exclude)
            metrics[label] = score(lists, held, ks, replay.catalogue.size, ms, degraded)
        lists, ms, degraded = replay.answer(users, policy, max(ks), exclude)
        metrics["served"] = score(lists, held, ks, replay.catalogue.size, ms, degraded)
        metrics.update(run_baselines(test, replay.catalogue, users, held, known, report.baselines, ks))
        routes = replay.route_coverage(users, exclude)
    finally:
        replay.close()
    report.test = CutResult(test.name, len(users), a.cold, metrics, routes)
    report.seconds = time.perf_counter() - started

    out = out or home.reports / "pipeline"
    write_report(report, out)
    if publish_policy:
        report.policy["version"] = publish(home, policy, report)
    return report


def publish(home: Home, policy: Policy, report: PipelineReport) -> str:
    from vitrine.versions import new_version_dir, write_manifest
    from vitrine.versions import publish as publish_version

    directory = new_version_dir(home, "pipeline")
    policy.save(directory)
    write_manifest(directory, model="pipeline", split=report.split, fraction=report.fraction,
                   stages={s: getattr(policy, s) for s in ("coarse", "fine", "diversity")},
                   reasons=policy.reasons, warnings=list(policy.warnings), validation=policy.validation,
                   baselines=report.baselines)
    publish_version(home, "pipeline", directory)
    return directory.name


def cli_evaluate(args, home: Home) -> int:
    from vitrine.online.redis_local import redis_url

    epochs = args.epochs
    settings = PipelineSettings(split=args.split, fraction=args.holdout, max_users=args.users, trials=args.trials,
                                ks=tuple(args.k) if args.k else DEFAULT_KS, objective=args.objective,
                                build=BuildSettings(two_tower_epochs=epochs, rankers=not args.no_rankers,
                                                    ranker_epochs=epochs, student_epochs=epochs))
    out = args.out or home.reports / "pipeline"
    report = evaluate_pipeline(home, redis_url(home), settings, out=out, publish_policy=not args.no_publish,
                               log=lambda m: print(m, flush=True))
    from evaluation.pipeline_report import table

    print(f"\ntest cut ({report.test.users:,} users):")
    print(table(report.test.metrics, report.ks))
    for verdict in report.verdicts():
        print(verdict)
    if "version" in report.policy:
        print(f"policy {report.policy['version']} published: "
              f"{Policy.from_dict({k: v for k, v in report.policy.items() if k != 'version'}).describe()}")
    print(f"report, JSON and plot in {out}")
    return 0
