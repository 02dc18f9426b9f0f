"""Scale presets for the synthetic platform, from a seconds-long test set to the full brief."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Preset:
    name: str
    users: int
    items: int
    merchants: int
    days: int
    chunk_users: int = 20_000  # active users simulated per chunk (bounds memory)
    start: str = "2026-10-01"  # first simulated day (UTC); fixed so output is reproducible
    # funnel targets from the brief: ~7 % of impressions clicked, ~2.6 % of clicks bought
    ctr: float = 0.07
    cart_rate: float = 0.09  # add-to-cart per click
    purchase_rate: float = 0.026  # purchases per click (all purchases follow a cart)
    new_items_per_day: float = 0.003  # fraction of the catalogue listed each day
    updated_items_per_day: float = 0.10  # fraction of items with a new version each day
    offline_per_day: float = 0.002  # fraction of items delisted each day
    new_users_per_day: float = 0.001  # fraction of users signing up during the window
    page_size: int = 8

    def with_overrides(self, **kw: object) -> Preset:
        return replace(self, **{k: v for k, v in kw.items() if v is not None})


PRESETS: dict[str, Preset] = {
    # tests: ~75k events, a few seconds
    "tiny": Preset("tiny", users=2_000, items=800, merchants=40, days=7),
    # the README's main job: ~1.5M events over two weeks, minutes for the whole pipeline
    "demo": Preset("demo", users=20_000, items=5_000, merchants=120, days=14),
    # the brief's platform: 1.3M users, 100k items, 1,600 merchants, ~7.5M events a day
    "platform": Preset("platform", users=1_300_000, items=100_000, merchants=1_600, days=1,
                       chunk_users=25_000),
    # the platform's catalogue (100k items, 1,600 merchants) with fewer users and days: what
    # the serving benchmark needs (item cache, embeddings, recall at catalogue scale) in minutes
    "catalogue": Preset("catalogue", users=50_000, items=100_000, merchants=1_600, days=4),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
