"""`vitrine evaluate retrieval`: every recall route on its own, the merged recall and two
baselines (popularity, item-KNN), side by side on one temporal hold-out — Recall@K, NDCG@K
and catalogue coverage — as a printed table, JSON/Markdown files and a plot.

Every method answers under the same rules as serving: items the user interacted with
before the split, bought items and offline items are filtered; a held-out item is one the
user engaged with (click, cart, purchase) after the split and never before.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.baselines import ItemKNN, Popularity
from evaluation.holdout import HoldOut, load_positives, prepare, split_holdout
from evaluation.metrics import evaluate
from retrieval.service import Retriever
from retrieval.tables import user_frame
from vitrine.config import Home

DEFAULT_KS = (20, 50, 100)


@dataclass
class RetrievalReport:
    split: str
    users: int
    catalogue: int
    ks: tuple[int, ...]
    metrics: dict[str, dict[str, float]]  # method → metric → value
    seconds: dict[str, float] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        df = pd.DataFrame(self.metrics).T
        cols = [f"{m}@{k}" for k in self.ks for m in ("recall", "ndcg")] + [f"coverage@{max(self.ks)}"]
        return df[cols].sort_values(f"recall@{max(self.ks)}", ascending=False)

    def markdown(self) -> str:
        df = self.table()
        head = "| method | " + " | ".join(df.columns) + " |"
        lines = [head, "|" + "---|" * (len(df.columns) + 1)]
        for name, row in df.iterrows():
            lines.append(f"| {name} | " + " | ".join(f"{v:.4f}" for v in row.to_numpy()) + " |")
        return "\n".join(lines)

    def render(self) -> str:
        return (f"retrieval hold-out from {self.split}: {self.users:,} users, {self.catalogue:,} items\n"
                + self.markdown())

    def merged_wins(self, k: int = 100) -> bool:
        key = f"recall@{k}"
        others = [v[key] for name, v in self.metrics.items() if name != "merged"]
        return all(self.metrics["merged"][key] > o for o in others)


def run_methods(retriever: Retriever, holdout: HoldOut, users: Sequence[str], user_features: pd.DataFrame,
                ks: Sequence[int], progress: bool = False) -> RetrievalReport:
    """Recommend for `users` with every route, the merger and the baselines; score them."""
    cat = retriever.catalogue
    k_max = max(ks)
    train = holdout.train[holdout.train["item_id"].isin(cat.row_of)]
    interactions = pd.DataFrame({"user": train["user_id"].to_numpy(),
                                 "item": train["item_id"].map(cat.row_of).to_numpy(np.int64)})
    history = interactions.groupby("user")["item"].agg(lambda s: sorted(set(s))).to_dict()
    started = time.perf_counter()
    baselines = [Popularity(interactions, cat.size), ItemKNN(interactions, cat.size)]
    seconds = {"baselines_fit": time.perf_counter() - started}

    features = user_features.set_index("user_id")
    rows = [features.loc[u].to_dict() if u in features.index else {} for u in users]
    rows = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()} for r in rows]
    embeddings = retriever.embed(list(users), rows) if retriever.two_tower is not None else None

    methods: dict[str, Callable] = {name: retriever.single_route(name).recall for name in retriever.routes}
    methods["merged"] = retriever.recall
    lists: dict[str, dict[str, list[str]]] = {name: {} for name in [*methods, *(b.name for b in baselines)]}
    spent = dict.fromkeys(lists, 0.0)
    iterator = range(len(users))
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="recall", unit="user")
    for i in iterator:
        user = users[i]
        seen_rows = history.get(user, [])
        seen = {str(cat.ids[r]) for r in seen_rows}
        state = retriever.user_state(user, rows[i], seen=seen,
                                     embedding=None if embeddings is None else embeddings[i])
        for name, recall in methods.items():
            t = time.perf_counter()
            lists[name][user] = [c.item_id for c in recall(state, k_max)]
            spent[name] += time.perf_counter() - t
        blocked = ~cat.online.copy()
        blocked[cat.rows(list(state.bought | state.seen))] = True
        for b in baselines:
            t = time.perf_counter()
            lists[b.name][user] = [str(cat.ids[r]) for r in b.recommend(seen_rows, blocked, k_max)]
            spent[b.name] += time.perf_counter() - t
    held_out = {u: holdout.test[u] for u in users}
    metrics: dict[str, dict[str, float]] = {}
    for name, recommended in lists.items():
        metrics[name] = {}
        for k in ks:
            metrics[name].update(evaluate(recommended, held_out, k, cat.size))
        metrics[name]["ms_per_user"] = 1000 * spent[name] / max(len(users), 1)
    seconds["recall"] = time.perf_counter() - started
    return RetrievalReport(holdout.split.isoformat(), len(users), cat.size, tuple(ks), metrics, seconds)


def plot(report: RetrievalReport, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    order = report.table().index.tolist()
    for name in order:
        m = report.metrics[name]
        style = {"linewidth": 3} if name == "merged" else {"linestyle": "--"} if name in (
            "popularity", "item_knn") else {}
        left.plot(report.ks, [m[f"recall@{k}"] for k in report.ks], marker="o", label=name, **style)
    left.set(xlabel="K", ylabel="Recall@K", title=f"Recall@K, hold-out from {report.split[:10]}")
    left.legend(fontsize=8)
    k = max(report.ks)
    right.barh(order[::-1], [report.metrics[n][f"coverage@{k}"] for n in order[::-1]])
    right.set(xlabel=f"catalogue coverage@{k}", title=f"{report.users:,} users, {report.catalogue:,} items")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def evaluate_retrieval(home: Home, redis_url: str, *, ks: Sequence[int] = DEFAULT_KS, holdout_days: int = 1,
                       max_users: int = 3000, epochs: int | None = None, seed: int = 0, out: Path | None = None,
                       progress: bool = False, log=print) -> RetrievalReport:
    started = time.perf_counter()
    holdout = split_holdout(load_positives(home), holdout_days)
    log(f"   hold-out: positives from {holdout.split:%Y-%m-%d %H:%M} to {holdout.end:%Y-%m-%d %H:%M}; "
        f"{len(holdout.test):,} users with new items; {len(holdout.train):,} training positives")
    sub, trained = prepare(home, redis_url, holdout, epochs=epochs, log=log)
    retriever = Retriever.load(sub, as_of=holdout.split, two_tower=trained.directory)
    users = sorted(holdout.test)
    if len(users) > max_users:
        users = sorted(np.random.default_rng(seed).choice(users, max_users, replace=False).tolist())
    report = run_methods(retriever, holdout, users, user_frame(sub.features, holdout.split, users), ks,
                         progress=progress)
    report.seconds["total"] = time.perf_counter() - started
    out = out or home.reports / "retrieval"
    out.mkdir(parents=True, exist_ok=True)
    (out / "retrieval.json").write_text(json.dumps(report.__dict__, indent=2, default=str) + "\n")
    (out / "retrieval.md").write_text(report.render() + "\n")
    plot(report, out / "retrieval.png")
    return report


def cli_evaluate(args, home: Home) -> int:
    import sys

    from vitrine.online.redis_local import redis_url

    out = args.out or home.reports / "retrieval"
    report = evaluate_retrieval(home, redis_url(home), ks=tuple(args.k or DEFAULT_KS), out=out,
                                progress=sys.stderr.isatty(), epochs=args.epochs)
    print(report.render())
    k = max(report.ks)
    verdict = "beats" if report.merged_wins(k) else "does NOT beat"
    print(f"merged {verdict} every single route and both baselines on recall@{k}; "
          f"table, JSON and plot in {out}")
    return 0
