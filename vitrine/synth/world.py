"""The synthetic platform's entities and their latent structure.

Users carry hidden tastes (three preferred leaf categories with weights, two preferred
brands, a price level relative to each category's median) and a behaviour segment
(heavy buyer, browser, casual). Items have a latent quality and a power-law popularity.
Models later have to recover this structure from behaviour alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

TAXONOMY: dict[str, list[str]] = {
    "apparel": ["dresses", "shirts", "jeans", "jackets", "shoes", "sportswear", "underwear", "hats"],
    "beauty": ["skincare", "makeup", "perfume", "haircare", "nails", "bath", "mens_care", "tools"],
    "electronics": ["phones", "headphones", "laptops", "cameras", "chargers", "speakers", "watches",
                    "tablets"],
    "home": ["bedding", "kitchen", "lighting", "storage", "decor", "furniture", "cleaning", "garden"],
    "food": ["snacks", "coffee", "tea", "sweets", "spices", "drinks", "organic", "frozen"],
    "sports": ["running", "cycling", "yoga", "fitness", "camping", "swimming", "ball_games",
               "climbing"],
    "toys": ["puzzles", "dolls", "blocks", "rc_cars", "board_games", "plush", "educational", "outdoor"],
    "books": ["fiction", "history", "science", "children", "comics", "cooking", "travel", "business"],
    "pets": ["dog_food", "cat_food", "pet_toys", "aquarium", "pet_beds", "grooming", "leashes", "treats"],
    "jewelry": ["rings", "necklaces", "earrings", "bracelets", "brooches", "anklets", "charms",
                "sets"],
    "auto": ["car_care", "seat_covers", "dash_cams", "tires", "tools", "lights", "mats", "phone_mounts"],
    "baby": ["diapers", "strollers", "bottles", "clothing", "car_seats", "bath", "feeding", "toys"],
}
# median price per top-level category (shop currency)
TOP_PRICE = {"apparel": 45, "beauty": 30, "electronics": 180, "home": 60, "food": 12, "sports": 55,
             "toys": 25, "books": 15, "pets": 20, "jewelry": 90, "auto": 40, "baby": 35}
ADJECTIVES = ["classic", "premium", "eco", "compact", "deluxe", "vintage", "smart", "soft", "bold",
              "light", "pro", "mini", "urban", "natural", "handmade", "limited"]
COLORS = ["black", "white", "red", "blue", "green", "beige", "pink", "grey", "gold", "silver"]
REGIONS = [f"r{i:02d}" for i in range(31)]
SEGMENTS = ("heavy_buyer", "browser", "casual")
SEGMENT_SHARE = np.array([0.06, 0.24, 0.70])
AGE_BANDS = ("<18", "18-24", "25-34", "35-44", "45-54", "55+")
AGE_SHARE = np.array([0.04, 0.22, 0.34, 0.22, 0.12, 0.06])
DEVICES = ("ios", "android", "web", "mini_program")
DEVICE_SHARE = np.array([0.30, 0.42, 0.18, 0.10])

LEAVES = [(top, leaf) for top, leaves in TAXONOMY.items() for leaf in leaves]
LEAF_TOP = np.array([list(TAXONOMY).index(top) for top, _ in LEAVES])
LEAF_PATH = np.array([f"{top}/{leaf}" for top, leaf in LEAVES], dtype=object)
LEAF_MEDIAN_LOG_PRICE = (np.log([TOP_PRICE[top] for top, _ in LEAVES])
                         + np.tile(np.linspace(-0.3, 0.3, 8), len(TAXONOMY)))


def brand_name(b: int) -> str:
    return f"brand{b:04d}"


def zipf_weights(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Power-law weights over a random permutation (the k-th most popular gets k^-exponent)."""
    w = np.arange(1, n + 1, dtype=float) ** -exponent
    return w[rng.permutation(n)]


@dataclass
class Merchants:
    ids: pa.Array
    top: np.ndarray  # main top-level category
    region: np.ndarray
    rating: np.ndarray
    created_s: np.ndarray  # seconds relative to the window start


@dataclass
class Items:
    ids: pa.Array
    merchant: np.ndarray
    leaf: np.ndarray
    brand: np.ndarray
    log_price: np.ndarray
    quality: np.ndarray
    popularity: np.ndarray  # base weight, power law
    created_s: np.ndarray
    title: np.ndarray
    tags: np.ndarray

    @property
    def n(self) -> int:
        return len(self.leaf)


@dataclass
class Users:
    ids: pa.Array
    segment: np.ndarray  # index into SEGMENTS
    fav_leaf: np.ndarray  # (n, 3)
    fav_weight: np.ndarray  # (n, 3), sums to 1, descending
    fav_brand: np.ndarray  # (n, 2)
    price_offset: np.ndarray  # preferred log-price minus the category median
    region: np.ndarray
    device: np.ndarray
    age_band: np.ndarray
    gender: np.ndarray
    member_level: np.ndarray
    signup_s: np.ndarray

    @property
    def n(self) -> int:
        return len(self.segment)


def _ids(prefix: str, n: int, width: int) -> pa.Array:
    return pa.array([f"{prefix}{i:0{width}d}" for i in range(n)], type=pa.string())


def make_merchants(n: int, rng: np.random.Generator) -> Merchants:
    top_pop = rng.dirichlet(np.full(len(TAXONOMY), 2.0))
    return Merchants(
        ids=_ids("m", n, 5),
        top=rng.choice(len(TAXONOMY), size=n, p=top_pop),
        region=rng.integers(0, len(REGIONS), n),
        rating=np.clip(rng.normal(4.4, 0.3, n), 1, 5).round(2),
        created_s=-rng.uniform(30, 5 * 365, n) * 86400,
    )


def make_items(n: int, merchants: Merchants, n_brands: int, rng: np.random.Generator,
               created_s: np.ndarray, id_offset: int = 0) -> Items:
    """`n` items; `created_s` gives each one's listing time (seconds from window start)."""
    # merchants are chosen with a power law too: a few big sellers, a long tail
    m_weight = np.arange(1, len(merchants.top) + 1, dtype=float) ** -0.8
    m_weight /= m_weight.sum()
    merchant = rng.choice(len(merchants.top), size=n, p=m_weight)
    per_top = 8
    # 70 % of a merchant's items are in its own top-level category
    own = rng.random(n) < 0.7
    top = np.where(own, merchants.top[merchant], rng.integers(0, len(TAXONOMY), n))
    leaf = top * per_top + rng.integers(0, per_top, n)
    # brands belong to one top-level category each: brand b is in top b % n_top
    n_top = len(TAXONOMY)
    brands_per_top = max(1, n_brands // n_top)
    brand_rank = np.minimum(rng.zipf(1.6, n) - 1, brands_per_top - 1)
    brand = brand_rank * n_top + top
    brand_premium = (np.sin(brand * 12.9898) * 0.35)  # fixed per brand
    log_price = LEAF_MEDIAN_LOG_PRICE[leaf] + brand_premium + rng.normal(0, 0.45, n)
    quality = rng.normal(0, 1, n)
    popularity = zipf_weights(n, 1.05, rng) * np.exp(0.3 * quality)
    adj = rng.integers(0, len(ADJECTIVES), n)
    color = rng.integers(0, len(COLORS), n)
    leaf_name = np.array([leaf_ for _, leaf_ in LEAVES], dtype=object)
    top_name = np.array(list(TAXONOMY), dtype=object)
    title = np.array([f"{brand_name(b)} {ADJECTIVES[a]} {COLORS[c]} {leaf_name[lf].replace('_', ' ')}"
                      for b, a, c, lf in zip(brand, adj, color, leaf, strict=True)], dtype=object)
    tags = np.array([f"{top_name[lf // per_top]}|{leaf_name[lf]}|{ADJECTIVES[a]}|{COLORS[c]}"
                     for a, c, lf in zip(adj, color, leaf, strict=True)], dtype=object)
    return Items(ids=_ids("i", n, 6) if id_offset == 0 else pa.array(
                     [f"i{i:06d}" for i in range(id_offset, id_offset + n)]),
                 merchant=merchant, leaf=leaf, brand=brand, log_price=log_price, quality=quality,
                 popularity=popularity, created_s=created_s, title=title, tags=tags)


def concat_items(a: Items, b: Items) -> Items:
    return Items(ids=pa.concat_arrays([a.ids, b.ids]),
                 **{f: np.concatenate([getattr(a, f), getattr(b, f)])
                    for f in ("merchant", "leaf", "brand", "log_price", "quality", "popularity",
                              "created_s", "title", "tags")})


def make_users(n: int, n_brands: int, rng: np.random.Generator, days: int,
               new_per_day: float) -> Users:
    n_top = len(TAXONOMY)
    top_pop = rng.dirichlet(np.full(n_top, 3.0))
    first_top = rng.choice(n_top, size=n, p=top_pop)
    # second and third favourites: often in the same top-level category
    same = rng.random((n, 2)) < 0.5
    other_top = rng.choice(n_top, size=(n, 2), p=top_pop)
    tops = np.column_stack([first_top, np.where(same, first_top[:, None], other_top)])
    fav_leaf = tops * 8 + rng.integers(0, 8, (n, 3))
    w = np.sort(rng.dirichlet([3.0, 2.0, 1.0], size=n), axis=1)[:, ::-1]
    brands_per_top = max(1, n_brands // n_top)
    fav_brand = (np.minimum(rng.zipf(1.6, (n, 2)) - 1, brands_per_top - 1) * n_top + tops[:, :2])
    segment = rng.choice(len(SEGMENTS), size=n, p=SEGMENT_SHARE)
    signup_s = -rng.uniform(1, 3 * 365, n) * 86400
    new = rng.random(n) < new_per_day * days
    signup_s[new] = rng.uniform(0, days, int(new.sum())) * 86400
    level = np.clip(rng.poisson(np.where(segment == 0, 2.5, 0.8)), 0, 5)
    return Users(
        ids=_ids("u", n, 7), segment=segment, fav_leaf=fav_leaf, fav_weight=w, fav_brand=fav_brand,
        price_offset=rng.normal(0, 0.45, n) + np.where(segment == 0, 0.2, 0.0),
        region=rng.integers(0, len(REGIONS), n), device=rng.choice(len(DEVICES), size=n, p=DEVICE_SHARE),
        age_band=rng.choice(len(AGE_BANDS), size=n, p=AGE_SHARE),
        gender=rng.choice(3, size=n, p=[0.52, 0.44, 0.04]), member_level=level, signup_s=signup_s,
    )
