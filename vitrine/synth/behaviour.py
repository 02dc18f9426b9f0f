"""Behaviour simulation: sessions, pages, impressions and the click → cart → purchase funnel.

What is shown follows the platform's old rule-based storefront (global popularity) mixed
with category/brand browsing driven by the user's hidden tastes; what is clicked and bought
follows the tastes, price fit, item quality, position, scene and hour of day. Intercepts
are calibrated per chunk so the funnel matches the brief (CTR ≈ 7 %, purchases ≈ 2.6 % of
clicks) whatever the mix of users in the chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitrine.synth.presets import Preset
from vitrine.synth.world import DEVICES, LEAF_MEDIAN_LOG_PRICE, LEAF_TOP, REGIONS, Items, Users

SCENES = ("home", "category", "search", "item_detail", "cart")
SCENE_SHARE = np.array([0.40, 0.25, 0.15, 0.15, 0.05])
# per scene, how a slot is filled: popular, taste category, preferred brand, new
SCENE_MIX = np.array([
    [0.55, 0.30, 0.10, 0.05],
    [0.15, 0.80, 0.00, 0.05],
    [0.15, 0.60, 0.25, 0.00],
    [0.10, 0.70, 0.20, 0.00],
    [0.40, 0.40, 0.20, 0.00],
])
SCENE_CLICK = np.array([0.0, 0.15, 0.35, 0.2, -0.1])
# per segment (heavy_buyer, browser, casual)
P_ACTIVE = np.array([0.40, 0.20, 0.06])
EXTRA_SESSIONS = np.array([1.0, 0.8, 0.4])
EXTRA_PAGES = np.array([3.3, 2.8, 1.15])
SEG_CLICK = np.array([0.1, 0.25, -0.1])
SEG_CART = np.array([1.5, -0.7, 0.0])
SEG_BUY = np.array([1.0, -0.6, 0.0])
# sessions per hour of day (UTC is treated as local time): quiet nights, lunch and evening peaks
HOUR_WEIGHT = np.array([2, 1.2, 0.8, 0.5, 0.4, 0.5, 1, 2, 3, 3.5, 4, 4.5, 5, 4.5, 4, 4, 4.2, 4.5,
                        5, 6, 7, 7.5, 6, 4], dtype=float)
HOUR_WEIGHT /= HOUR_WEIGHT.sum()
HOUR_CLICK = 0.25 * np.cos(2 * np.pi * (np.arange(24) - 21) / 24)
NEW_ITEM_DAYS = 3
US = 1_000_000


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def calibrate(logits: np.ndarray, target: float) -> float:
    """The intercept b with mean(sigmoid(b + logits)) == target (bisection)."""
    if logits.size == 0:
        return 0.0
    lo, hi = -20.0, 20.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if _sigmoid(mid + logits).mean() < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


class _Sampler:
    """Inverse-CDF sampling of items, globally or within a group (leaf category, brand)."""

    def __init__(self, weights: np.ndarray, groups: np.ndarray | None = None, n_groups: int = 0):
        if groups is None:
            self.order = np.arange(len(weights))
            self.cum = np.cumsum(weights)
            self.start = np.array([0.0])
            self.end = np.array([self.cum[-1]])
        else:
            self.order = np.argsort(groups, kind="stable")
            self.cum = np.cumsum(weights[self.order])
            bounds = np.searchsorted(groups[self.order], np.arange(n_groups + 1), side="left")
            padded = np.concatenate([[0.0], self.cum])
            self.start = padded[bounds[:-1]]
            self.end = padded[bounds[1:]]

    def has(self, group: np.ndarray) -> np.ndarray:
        return self.end[group] > self.start[group]

    def sample(self, group: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        u = self.start[group] + rng.random(len(group)) * (self.end[group] - self.start[group])
        idx = np.searchsorted(self.cum, u, side="right")
        return self.order[np.minimum(idx, len(self.order) - 1)]


@dataclass
class DayState:
    """What the storefront can show on one day."""

    available: np.ndarray  # bool per item
    log_price: np.ndarray
    day_start_s: float
    popular: _Sampler
    by_leaf: _Sampler
    by_brand: _Sampler
    fresh: _Sampler
    log_pop_z: np.ndarray

    @classmethod
    def build(cls, items: Items, online: np.ndarray, log_price: np.ndarray, day_start_s: float,
              n_leaves: int, n_brands: int) -> DayState:
        available = online & (items.created_s < day_start_s)
        fresh = available & (items.created_s >= day_start_s - NEW_ITEM_DAYS * 86400)
        w = np.where(available, items.popularity, 0.0) * np.where(fresh, 3.0, 1.0)
        lp = np.log(items.popularity)
        fresh_w = np.where(fresh, 1.0, 0.0)
        return cls(
            available=available, log_price=log_price, day_start_s=day_start_s,
            popular=_Sampler(w), by_leaf=_Sampler(w, items.leaf, n_leaves),
            by_brand=_Sampler(w, items.brand, n_brands),
            fresh=_Sampler(fresh_w if fresh.any() else w),
            log_pop_z=(lp - lp.mean()) / (lp.std() + 1e-9),
        )


def simulate_chunk(users: Users, items: Items, day: DayState, active: np.ndarray,
                   rng: np.random.Generator, preset: Preset) -> dict[str, np.ndarray]:
    """Events of the `active` users (indices) for one day, as index/number columns
    (times in µs from the window start), sorted by time."""
    seg = users.segment[active]
    # sessions → pages → slots
    n_sess = 1 + rng.poisson(EXTRA_SESSIONS[seg])
    s_user = np.repeat(np.arange(len(active)), n_sess)
    s_hour = rng.choice(24, size=len(s_user), p=HOUR_WEIGHT)
    s_start = day.day_start_s + s_hour * 3600 + rng.uniform(0, 3600, len(s_user))
    s_device = np.where(rng.random(len(s_user)) < 0.9, users.device[active][s_user],
                        rng.integers(0, len(DEVICES), len(s_user)))
    n_pages = 1 + rng.poisson(EXTRA_PAGES[seg[s_user]])
    p_sess = np.repeat(np.arange(len(s_user)), n_pages)
    p_scene = rng.choice(len(SCENES), size=len(p_sess), p=SCENE_SHARE)
    gaps = rng.exponential(45.0, len(p_sess))
    first = np.concatenate([[0], np.cumsum(n_pages)[:-1]])
    cum = np.cumsum(gaps)
    p_time = s_start[p_sess] + cum - cum[first][p_sess]  # a session's first page at its start

    k = preset.page_size
    i_page = np.repeat(np.arange(len(p_sess)), k)
    i_pos = np.tile(np.arange(k), len(p_sess))
    i_sess = p_sess[i_page]
    i_user_local = s_user[i_sess]
    i_user = active[i_user_local]
    i_scene = p_scene[i_page]
    n = len(i_page)

    # which mechanism fills each slot
    u = rng.random(n)
    mix = np.cumsum(SCENE_MIX[i_scene], axis=1)
    route = (u[:, None] > mix).sum(axis=1)
    fav_pick = (rng.random(n)[:, None] > np.cumsum(users.fav_weight[i_user], axis=1)).sum(axis=1)
    fav_pick = np.minimum(fav_pick, 2)
    leaf_choice = users.fav_leaf[i_user, fav_pick]
    brand_choice = users.fav_brand[i_user, rng.integers(0, 2, n)]
    item = day.popular.sample(np.zeros(n, dtype=np.int64), rng)
    taste = (route == 1) & day.by_leaf.has(leaf_choice)
    item[taste] = day.by_leaf.sample(leaf_choice[taste], rng)
    brand = (route == 2) & day.by_brand.has(brand_choice)
    item[brand] = day.by_brand.sample(brand_choice[brand], rng)
    new = route == 3
    item[new] = day.fresh.sample(np.zeros(int(new.sum()), dtype=np.int64), rng)

    # the hidden utility
    leaf = items.leaf[item]
    fav = users.fav_leaf[i_user]
    cat_w = (users.fav_weight[i_user] * (fav == leaf[:, None])).sum(axis=1)
    top_match = (LEAF_TOP[fav] == LEAF_TOP[leaf][:, None]).any(axis=1)
    brand_match = (users.fav_brand[i_user] == items.brand[item][:, None]).any(axis=1)
    price_gap = np.abs(day.log_price[item] - LEAF_MEDIAN_LOG_PRICE[leaf] - users.price_offset[i_user])
    quality = items.quality[item]
    i_time = p_time[i_page] + i_pos * 1e-3
    hour = ((i_time - day.day_start_s) // 3600).astype(int) % 24
    seg_i = users.segment[i_user]

    click_logit = (2.2 * cat_w + 0.5 * top_match + 0.9 * brand_match - 0.8 * price_gap
                   + 0.3 * quality + 0.15 * day.log_pop_z[item] - 0.05 * i_pos
                   + HOUR_CLICK[hour] + SCENE_CLICK[i_scene] + SEG_CLICK[seg_i]
                   + rng.normal(0, 0.5, n))
    b0 = calibrate(click_logit, preset.ctr)
    clicked = rng.random(n) < _sigmoid(b0 + click_logit)
    c = np.flatnonzero(clicked)
    app = s_device[i_sess[c]] != DEVICES.index("web")
    cart_logit = (1.2 * cat_w[c] + 0.7 * brand_match[c] - 0.9 * price_gap[c] + 0.5 * quality[c]
                  + SEG_CART[seg_i[c]] + 0.3 * app)
    c0 = calibrate(cart_logit, preset.cart_rate)
    carted = rng.random(len(c)) < _sigmoid(c0 + cart_logit)
    a = c[carted]
    buy_logit = 0.5 * quality[a] - 0.6 * price_gap[a] + SEG_BUY[seg_i[a]]
    d0 = calibrate(buy_logit, preset.purchase_rate / preset.cart_rate)
    bought = rng.random(len(a)) < _sigmoid(d0 + buy_logit)
    b = a[bought]

    t_click = i_time[c] + rng.exponential(6.0, len(c))
    t_cart = t_click[carted] + rng.exponential(40.0, len(a))
    t_buy = t_cart[bought] + rng.exponential(150.0, len(b))

    src = np.concatenate([np.arange(n), c, a, b])
    etype = np.concatenate([np.zeros(n, np.int8), np.ones(len(c), np.int8),
                            np.full(len(a), 2, np.int8), np.full(len(b), 3, np.int8)])
    etime = np.concatenate([i_time, t_click, t_cart, t_buy])
    quantity = np.concatenate([np.zeros(n + len(c) + len(a), np.int64), 1 + rng.poisson(0.2, len(b))])
    order = np.lexsort((etype, etime))
    src, etype, etime, quantity = src[order], etype[order], etime[order], quantity[order]
    region = np.where(rng.random(len(src)) < 0.95, users.region[i_user[src]],
                      rng.integers(0, len(REGIONS), len(src)))
    return {
        "event_time_us": np.round(etime * US).astype(np.int64),
        "user": i_user[src],
        "item": item[src],
        "event_type": etype,
        "session": i_sess[src],
        "device": s_device[i_sess[src]],
        "region": region,
        "scene": i_scene[src],
        "position": i_pos[src],
        "price": np.round(np.exp(day.log_price[item[src]]), 2),
        "quantity": quantity,
    }
