"""Synthetic ranker_v1 rows for ranking tests: users with top categories and brands, items
with categories, stats and prices, a request context, and labels drawn so that a user clicks
items of their preferred categories far more often (models have something to learn)."""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd

from ranking.context import context_features
from ranking.layout import Layout
from vitrine.featurestore.contract import repo_fields


@cache
def layout(service: str = "ranker_v1") -> Layout:
    """A service's layout as the repository defines it (no registry needed)."""
    return Layout(service, repo_fields(service))


def student_spec(service: str = "coarse_v1") -> dict:
    from ranking.fm import FeatureMap

    return FeatureMap.spec_of(layout(service))

CATEGORIES = [f"c{i}/s{j}" for i in range(4) for j in range(3)]
BRANDS = [f"b{i}" for i in range(8)]
SEGMENTS = ["high_value", "potential", "normal"]


USER_NUMERIC = layout().user_numeric
ROW_NUMERIC = layout().row_numeric


def synthetic_frame(n_rows: int = 6000, n_users: int = 150, n_items: int = 120, days: int = 4,
                    seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    users = pd.DataFrame({"user_id": [f"u{i}" for i in range(n_users)]})
    users["segment"] = rng.choice(SEGMENTS, n_users, p=[0.2, 0.3, 0.5]).astype(object)
    users.loc[rng.random(n_users) < 0.1, "segment"] = None  # new users: no behaviour snapshot
    fav = [list(rng.choice(CATEGORIES, 2, replace=False)) for _ in range(n_users)]
    favb = [list(rng.choice(BRANDS, 2, replace=False)) for _ in range(n_users)]
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)],
                          "category": rng.choice(CATEGORIES, n_items), "brand": rng.choice(BRANDS, n_items),
                          "price": np.round(rng.lognormal(3, 0.5, n_items), 2),
                          "quality": rng.normal(0, 1, n_items)})
    u = rng.integers(0, n_users, n_rows)
    it = rng.integers(0, n_items, n_rows)
    start = pd.Timestamp("2024-05-01", tz="UTC")
    ts = start + pd.to_timedelta(np.sort(rng.uniform(0, days * 86400, n_rows)), unit="s")
    f = pd.DataFrame({"user_id": users["user_id"].to_numpy()[u], "item_id": items["item_id"].to_numpy()[it],
                      "event_timestamp": ts})
    known = users["segment"].notna().to_numpy()[u]
    f["user_behaviour__segment"] = users["segment"].to_numpy()[u]
    for c in USER_NUMERIC:  # one value per user (one snapshot per user here)
        f[c] = np.where(known, rng.gamma(2, 3, n_users)[u], np.nan)
    f["user_preferences__top_categorys"] = [fav[k] if ok else None for k, ok in zip(u, known, strict=True)]
    f["user_preferences__top_category_weights"] = [[0.7, 0.3] if ok else None for ok in known]
    f["user_preferences__top_brands"] = [favb[k] if ok else None for k, ok in zip(u, known, strict=True)]
    f["user_preferences__top_brand_weights"] = [[0.6, 0.4] if ok else None for ok in known]
    f["user_profile__age_band"] = rng.choice(["18-24", "25-34", "35-44"], n_users)[u]
    f["user_profile__gender"] = rng.choice(["f", "m"], n_users)[u]
    f["user_profile__region"] = rng.choice(["r1", "r2", "r3"], n_users)[u]
    f["user_profile__member_level"] = rng.integers(0, 4, n_users)[u]
    f["item_attributes__category"] = items["category"].to_numpy()[it]
    f["item_attributes__top_category"] = [c.split("/")[0] for c in f["item_attributes__category"]]
    f["item_attributes__brand"] = items["brand"].to_numpy()[it]
    f["item_attributes__merchant_id"] = [f"m{k % 5}" for k in it]
    f["item_attributes__price"] = items["price"].to_numpy()[it]
    f["item_attributes__rating"] = np.round(rng.uniform(3, 5, n_rows), 2)
    f["item_attributes__is_online"] = True
    for c in ROW_NUMERIC:
        if c.startswith(("item_stats__", "merchant_stats__")):
            f[c] = rng.gamma(2, 2, n_rows)
    f.loc[rng.random(n_rows) < 0.1, [c for c in ROW_NUMERIC if c.startswith("item_stats__")]] = np.nan
    f["item_stats__ctr_30d"] = 0.05 + 0.02 * items["quality"].to_numpy()[it].clip(-2, 2)
    f["user_behaviour__price_level"] = np.where(known, rng.lognormal(3, 0.3, n_users)[u], np.nan)
    f["request_unix_s"] = (ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    f["device_code"] = rng.integers(-1, 5, n_rows)
    ctx = [context_features(t, d, [p], lvl) for t, d, p, lvl in
           zip(f["request_unix_s"], f["device_code"], f["item_attributes__price"], f["user_behaviour__price_level"],
               strict=True)]
    for name in ctx[0]:
        f[name] = np.concatenate([c[name] for c in ctx])
    del f["request_unix_s"], f["device_code"]
    likes_cat = np.array([c in (fav[k] if ok else []) for c, k, ok in
                          zip(f["item_attributes__category"], u, known, strict=True)])
    likes_brand = np.array([b in favb[k] and ok for b, k, ok in zip(f["item_attributes__brand"], u, known,
                                                                    strict=True)])
    logit = -3.0 + 2.2 * likes_cat + 1.0 * likes_brand + 0.5 * items["quality"].to_numpy()[it]
    f["label_click"] = (rng.random(n_rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    buy = rng.random(n_rows) < np.where(likes_cat, 0.25, 0.08)
    f["label_purchase"] = (f["label_click"].to_numpy() & buy).astype(np.int64)
    return f
