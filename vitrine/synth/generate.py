"""`vitrine generate`: write a synthetic platform in the documented ingest schemas.

Output directory:
  merchants.parquet, items.parquet (every version: initial, daily updates, new listings),
  users.parquet, events/events-YYYY-MM-DD-NNN.{parquet,csv}, truth/users.parquet (the hidden
  segments and tastes, for evaluation only), manifest.json (settings and funnel figures).
Events are simulated one day and one chunk of active users at a time, so memory stays
bounded at any scale. Every random draw comes from a generator seeded by (seed, day, chunk):
the same seed gives the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from vitrine.data.schemas import EVENT_TYPES, EVENTS, ITEMS, MERCHANTS, USERS
from vitrine.synth.behaviour import P_ACTIVE, SCENES, DayState, simulate_chunk
from vitrine.synth.presets import Preset
from vitrine.synth.world import (
    AGE_BANDS,
    DEVICES,
    LEAF_PATH,
    LEAVES,
    REGIONS,
    SEGMENTS,
    TAXONOMY,
    Items,
    brand_name,
    concat_items,
    make_items,
    make_merchants,
    make_users,
)

US = 1_000_000
GENDER_CODES = ("f", "m", "u")


@dataclass
class GenerateSummary:
    preset: dict
    seed: int
    days: int
    start: str
    out: str
    users: int = 0
    items: int = 0
    item_versions: int = 0
    merchants: int = 0
    events: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EVENT_TYPES, 0))
    daily_active: list[int] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    @property
    def total_events(self) -> int:
        return sum(self.events.values())

    def rates(self) -> dict[str, float]:
        e = self.events
        return {
            "ctr": e["click"] / max(e["impression"], 1),
            "cart_per_click": e["add_to_cart"] / max(e["click"], 1),
            "purchase_per_click": e["purchase"] / max(e["click"], 1),
            "events_per_active_user": self.total_events / max(sum(self.daily_active), 1),
        }

    def to_dict(self) -> dict:
        d = asdict(self)
        d["total_events"] = self.total_events
        d["rates"] = {k: round(v, 5) for k, v in self.rates().items()}
        return d

    def render(self) -> str:
        r = self.rates()
        dau = np.mean(self.daily_active) if self.daily_active else 0
        return "\n".join([
            f"generated preset {self.preset['name']!r} seed {self.seed}: {self.days} days from "
            f"{self.start} into {self.out}",
            f"  users {self.users:,}  items {self.items:,} ({self.item_versions:,} versions)  "
            f"merchants {self.merchants:,}  daily actives {dau:,.0f}",
            f"  events {self.total_events:,}: " + ", ".join(f"{k} {v:,}" for k, v in self.events.items()),
            f"  CTR {r['ctr']:.2%}  add-to-cart/click {r['cart_per_click']:.2%}  "
            f"purchase/click {r['purchase_per_click']:.2%}  events/active user "
            f"{r['events_per_active_user']:.1f}",
        ])


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *key])))


def _ts(epoch_us: int, rel_seconds: np.ndarray) -> pa.Array:
    return pa.array(epoch_us + np.round(rel_seconds * US).astype(np.int64), type=pa.timestamp("us", tz="UTC"))


def _take(values: list[str] | tuple[str, ...] | pa.Array, idx: np.ndarray) -> pa.Array:
    arr = values if isinstance(values, pa.Array) else pa.array(list(values), type=pa.string())
    return arr.take(pa.array(idx))


def _write(table: pa.Table, path: Path, fmt: str) -> Path:
    path = path.with_suffix(f".{fmt}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path, compression="zstd")
    return path


def _item_rows(items: Items, idx: np.ndarray, log_price: np.ndarray, online: np.ndarray,
               updated_s: np.ndarray, merchant_ids: pa.Array, epoch_us: int,
               rng: np.random.Generator) -> pa.Table:
    rating = np.clip(4.2 + 0.35 * items.quality[idx] + rng.normal(0, 0.15, len(idx)), 1, 5).round(2)
    return pa.table({
        "item_id": items.ids.take(pa.array(idx)),
        "merchant_id": merchant_ids.take(pa.array(items.merchant[idx])),
        "category": pa.array(LEAF_PATH[items.leaf[idx]].tolist(), type=pa.string()),
        "brand": pa.array([brand_name(b) for b in items.brand[idx]], type=pa.string()),
        "price": pa.array(np.round(np.exp(log_price[idx]), 2)),
        "rating": pa.array(rating),
        "title": pa.array(items.title[idx].tolist(), type=pa.string()),
        "tags": pa.array(items.tags[idx].tolist(), type=pa.string()),
        "created_at": _ts(epoch_us, items.created_s[idx]),
        "updated_at": _ts(epoch_us, updated_s),
        "status": _take(("offline", "online"), online[idx].astype(np.int64)),
    }, schema=ITEMS.arrow_schema())


def generate(preset: Preset, out: Path, *, seed: int = 0, days: int | None = None,
             fmt: str = "parquet", progress: bool = False) -> GenerateSummary:
    """Simulate `days` days (default: the preset's) and write them under `out`."""
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"format must be parquet or csv, not {fmt!r}")
    days = days if days is not None else preset.days
    if days < 1:
        raise ValueError("days must be at least 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = datetime.fromisoformat(preset.start).replace(tzinfo=UTC)
    epoch_us = int(start.timestamp()) * US
    summary = GenerateSummary(preset=asdict(preset), seed=seed, days=days, start=preset.start,
                              out=str(out))

    world = _rng(seed, 0)
    n_top = len(TAXONOMY)
    n_brands = max(n_top * 4, (preset.items // 50) // n_top * n_top)
    merchants = make_merchants(preset.merchants, world)
    items = make_items(preset.items, merchants, n_brands, world,
                       created_s=-world.uniform(3, 3 * 365, preset.items) * 86400)
    n_new = round(preset.items * preset.new_items_per_day) * days
    if n_new:
        new_items = make_items(n_new, merchants, n_brands, world,
                               created_s=np.sort(world.uniform(0, days * 86400, n_new)),
                               id_offset=preset.items)
        items = concat_items(items, new_items)
    users = make_users(preset.users, n_brands, world, days, preset.new_users_per_day)
    merchant_ids = merchants.ids

    # catalogue tables: merchants and users once; items as a history of versions
    m_created = merchants.created_s
    files = [
        _write(pa.table({
            "merchant_id": merchant_ids,
            "name": pa.array([f"Merchant {i}" for i in range(preset.merchants)]),
            "region": _take(REGIONS, merchants.region),
            "rating": pa.array(merchants.rating),
            "created_at": _ts(epoch_us, m_created),
            "updated_at": _ts(epoch_us, m_created),
        }, schema=MERCHANTS.arrow_schema()), out / "merchants", "parquet"),
        _write(pa.table({
            "user_id": users.ids,
            "signup_at": _ts(epoch_us, users.signup_s),
            "age_band": _take(AGE_BANDS, users.age_band),
            "gender": _take(GENDER_CODES, users.gender),
            "region": _take(REGIONS, users.region),
            "member_level": pa.array(users.member_level.astype(np.int64)),
            "updated_at": _ts(epoch_us, users.signup_s),
        }, schema=USERS.arrow_schema()), out / "users", "parquet"),
        _write(pa.table({
            "user_id": users.ids,
            "segment": _take(SEGMENTS, users.segment),
            **{f"fav_category_{k + 1}": pa.array(LEAF_PATH[users.fav_leaf[:, k]].tolist()) for k in range(3)},
            **{f"fav_weight_{k + 1}": pa.array(users.fav_weight[:, k]) for k in range(3)},
            **{f"fav_brand_{k + 1}": pa.array([brand_name(b) for b in users.fav_brand[:, k]])
               for k in range(2)},
            "price_offset": pa.array(users.price_offset),
        }), out / "truth" / "users", "parquet"),
    ]

    online = np.ones(items.n, dtype=bool)
    log_price = items.log_price.copy()
    n_initial = preset.items
    initial_idx = np.arange(n_initial)
    item_tables = [_item_rows(items, initial_idx, log_price, online,
                              items.created_s[:n_initial] * world.uniform(0, 1, n_initial),
                              merchant_ids, epoch_us, world)]
    if n_new:
        new_idx = np.arange(n_initial, items.n)
        item_tables.append(_item_rows(items, new_idx, log_price, online, items.created_s[n_initial:],
                                      merchant_ids, epoch_us, world))

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=days, desc="generate days", unit="day", leave=False)
    n_leaves = len(LEAVES)
    for day in range(days):
        rng = _rng(seed, 1, day)
        day_start = day * 86400.0
        date = (start + timedelta(days=day)).strftime("%Y-%m-%d")
        # catalogue changes at the start of the day: ~10 % of listed items get a new version
        listed = np.flatnonzero(items.created_s < day_start)
        changed = listed[rng.random(len(listed)) < preset.updated_items_per_day]
        log_price[changed] += rng.normal(0, 0.08, len(changed))
        flip_off = changed[online[changed] & (rng.random(len(changed)) < preset.offline_per_day
                                              / max(preset.updated_items_per_day, 1e-9))]
        flip_on = changed[~online[changed] & (rng.random(len(changed)) < 0.3)]
        online[flip_off] = False
        online[flip_on] = True
        if len(changed):
            item_tables.append(_item_rows(items, changed, log_price, online,
                                          np.full(len(changed), day_start), merchant_ids, epoch_us, rng))
        state = DayState.build(items, online, log_price, day_start, n_leaves, n_brands)

        signed_up = users.signup_s < day_start
        active = np.flatnonzero(signed_up & (rng.random(users.n) < P_ACTIVE[users.segment]))
        summary.daily_active.append(int(active.size))
        for chunk, lo in enumerate(range(0, len(active), preset.chunk_users)):
            crng = _rng(seed, 2, day, chunk)
            cols = simulate_chunk(users, items, state, active[lo:lo + preset.chunk_users], crng, preset)
            table = _events_table(cols, users, items, merchant_ids, epoch_us, day, chunk)
            counts = np.bincount(cols["event_type"], minlength=len(EVENT_TYPES))
            for name, c in zip(EVENT_TYPES, counts, strict=True):
                summary.events[name] += int(c)
            files.append(_write(table, out / "events" / f"events-{date}-{chunk:03d}", fmt))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()

    items_table = pa.concat_tables(item_tables)
    order = np.lexsort((np.asarray(items_table.column("item_id").to_pylist(), dtype=object).astype(str),
                        items_table.column("updated_at").cast(pa.int64()).to_numpy()))
    files.append(_write(items_table.take(pa.array(order)), out / "items", "parquet"))
    summary.users, summary.items, summary.merchants = users.n, items.n, preset.merchants
    summary.item_versions = items_table.num_rows
    summary.files = [str(f.relative_to(out)) for f in files]
    manifest = {k: v for k, v in summary.to_dict().items() if k != "out"}  # same bytes anywhere
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return summary


def _events_table(cols: dict[str, np.ndarray], users, items: Items, merchant_ids: pa.Array,
                  epoch_us: int, day: int, chunk: int) -> pa.Table:
    is_purchase = cols["event_type"] == EVENT_TYPES.index("purchase")
    sessions, s_idx = np.unique(cols["session"], return_inverse=True)
    session_ids = pa.array([f"s{day:03d}{chunk:03d}{s:06d}" for s in sessions], type=pa.string())
    return pa.table({
        "event_id": pa.nulls(len(is_purchase), pa.string()),
        "event_time": pa.array(epoch_us + cols["event_time_us"], type=pa.timestamp("us", tz="UTC")),
        "user_id": users.ids.take(pa.array(cols["user"])),
        "item_id": items.ids.take(pa.array(cols["item"])),
        "event_type": _take(EVENT_TYPES, cols["event_type"]),
        "session_id": session_ids.take(pa.array(s_idx)),
        "device": _take(DEVICES, cols["device"]),
        "region": _take(REGIONS, cols["region"]),
        "scene": _take(SCENES, cols["scene"]),
        "position": pa.array(cols["position"].astype(np.int64)),
        "price": pa.array(cols["price"]),
        "quantity": pa.array(cols["quantity"], mask=~is_purchase),
        "merchant_id": merchant_ids.take(pa.array(items.merchant[cols["item"]])),
        "request_id": pa.nulls(len(is_purchase), pa.string()),  # a log of our own answers only has them
    }, schema=EVENTS.arrow_schema()).drop_columns(["event_id", "request_id"])
