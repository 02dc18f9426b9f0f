"""Ranking samples conditioned on recall, for logs without impressions.

The rankers only ever order what recall proposes, so on a log that records no impressions
(click-, cart-, purchase- or rating-only) their rows are built from recall's own output
rather than from popularity-drawn negatives (the Spark `samples` job's stand-in):

- each (user, basket) among the positive rows — a basket is the session, or the user's day
  when the log has no sessions — is recalled once with the user's features as of the
  basket's first positive (the point-in-time join's values; the two-tower user vector is
  recomputed from them, not the training-time one): the merged list (the routes' default
  blend), top `pool`, minus what the user had already seen;
- a positive row stays only if recall proposed its item: an engaged item recall could not
  have returned teaches the rankers nothing about ordering recall's output — worse, with
  negatives drawn from recall it teaches them to prefer what recall ranks low (measured on
  MovieLens: validation Recall@20 fell from 0.227 to 0.02–0.04 with the rankers on);
- each kept positive gets `per_positive` negatives from the same pool, items not engaged
  with in the basket, drawn without replacement within the basket where the pool allows, at
  the positive's time and context.

Labels then mean: 1 = recalled for the user at that time and engaged with in the basket (a
click, cart, purchase, or a rating for a rating log — `vitrine convert` turns every rating
into a click and ratings ≥ 4 also into a purchase), 0 = recalled and not engaged with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SOURCES = ("auto", "recall", "popularity")
# user columns recall reads (Feast full names), taken from the positives' point-in-time join
USER_PREFIXES = ("user_behaviour__", "user_preferences__", "user_profile__", "als_user_factors__")


@dataclass(frozen=True)
class NegativeSettings:
    # "auto": logged impressions when the log has them, else recall candidates;
    # "popularity": the Spark job's popularity-proportional draws
    source: str = "auto"
    per_positive: int = 4
    pool: int = 500  # recall candidates per basket: what serving recalls (`ServingConfig.recall_k`)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"negatives source {self.source!r}: choose one of {', '.join(SOURCES)}")


DEFAULT = NegativeSettings()


def resolve_source(samples: pd.DataFrame, settings: NegativeSettings) -> str:
    """'logged' when the samples are impressions (nothing was sampled), else the setting
    ('auto' → 'recall')."""
    sampled = samples["sampled"].to_numpy(dtype=bool) if "sampled" in samples else np.zeros(len(samples), bool)
    if not sampled.any():
        return "logged"
    return "recall" if settings.source == "auto" else settings.source


def logged_parts(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The logged (not sampled) rows of a log without impressions, in two: the positives,
    which recall conditions and draws negatives for; and the rows of our own exposures nobody
    clicked (spark_jobs/samples.py), negatives as they were shown, kept as they are."""
    logged = rows[~rows["sampled"].astype(bool)]
    clicked = logged["label_click"].fillna(0).astype(int).to_numpy() == 1
    return logged[clicked], logged[~clicked]


def basket_of(frame: pd.DataFrame) -> pd.Series:
    day = pd.to_datetime(frame["event_timestamp"], utc=True).dt.strftime("%Y-%m-%d")
    session = frame["session_id"] if "session_id" in frame else pd.Series(None, index=frame.index, dtype=object)
    return frame["user_id"].astype(str) + "|" + session.where(session.notna(), day).astype(str)


def recall_samples(retriever, positives: pd.DataFrame, settings: NegativeSettings = DEFAULT
                   ) -> tuple[np.ndarray, pd.DataFrame, dict]:
    """(which `positives` rows recall proposed, negative entity rows for those, counts).
    `positives` are joined point in time, so they carry the user's features."""
    rng = np.random.default_rng(settings.seed)
    frame = positives.reset_index(drop=True)
    baskets = basket_of(frame)
    user_cols = [c for c in frame.columns if c.startswith(USER_PREFIXES)]
    first = frame.assign(_basket=baskets).sort_values("event_timestamp", kind="stable").drop_duplicates("_basket")
    anchors = first[["_basket", "user_id", *user_cols]].reset_index(drop=True)
    values = [{c: (None if _missing(v) else v) for c, v in row.items()}
              for row in anchors[user_cols].to_dict("records")]
    embeddings = None
    if retriever.two_tower is not None and len(anchors):
        embeddings = np.concatenate([retriever.embed(anchors["user_id"].iloc[i:i + 2048].tolist(), values[i:i + 2048])
                                     for i in range(0, len(anchors), 2048)])
    engaged = frame.groupby(baskets)["item_id"].agg(set)
    pools: dict[str, list[str]] = {}
    for i, (basket, user) in enumerate(zip(anchors["_basket"], anchors["user_id"], strict=True)):
        state = retriever.user_state(str(user), values[i],
                                     embedding=None if embeddings is None else embeddings[i])
        pools[basket] = [c.item_id for c in retriever.recall(state, settings.pool)]
    in_pool = {b: set(pool) for b, pool in pools.items()}
    kept = np.array([item in in_pool[b] for b, item in zip(baskets, frame["item_id"], strict=True)], dtype=bool)
    kept_per_basket = pd.Series(kept).groupby(baskets.to_numpy()).sum()

    drawn: dict[str, list[str]] = {}
    for basket, pool in pools.items():
        others = [item for item in pool if item not in engaged[basket]]
        need = settings.per_positive * int(kept_per_basket[basket])
        if not need or not others:
            continue
        picks = rng.permutation(len(others))
        if need > len(others):  # small pools: every candidate, then repeats across the basket's positives
            picks = np.concatenate([picks, rng.integers(0, len(others), need - len(others))])
        drawn[basket] = [others[j] for j in picks[:need]]

    keep_cols = ["user_id", "event_timestamp", *[c for c in ("session_id", "device", "region", "scene", "position")
                                                 if c in frame]]
    rows, taken = [], dict.fromkeys(drawn, 0)
    for idx in np.flatnonzero(kept):
        basket = baskets.iat[idx]
        items = drawn.get(basket)
        if not items:
            continue
        start = taken[basket]
        taken[basket] = start + settings.per_positive
        base = {c: frame.at[idx, c] for c in keep_cols}
        rows.extend({**base, "item_id": item} for item in items[start:start + settings.per_positive])
    out = pd.DataFrame(rows, columns=[*keep_cols, "item_id"])
    # the candidate brings its own listing price and merchant, as the popularity draws do
    catalogue_items = retriever.items.set_index("item_id")
    for column, source in (("price", "item_attributes__price"), ("merchant_id", "item_attributes__merchant_id")):
        if source in catalogue_items:
            out[column] = out["item_id"].map(catalogue_items[source]).to_numpy()
    out = out.drop_duplicates(["user_id", "item_id", "event_timestamp"]).reset_index(drop=True)
    out["label_click"] = np.int64(0)
    out["label_purchase"] = np.int64(0)
    out["sampled"] = True
    stats = {"baskets": len(anchors), "positives": len(frame), "positives_recalled": int(kept.sum()),
             "negatives": len(out), "pool": settings.pool, "per_positive": settings.per_positive}
    return kept, out, stats


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))

