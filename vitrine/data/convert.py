"""Converters from public interaction logs to Vitrine's ingest contracts (docs/data.md), so a
real log goes through the documented path: `vitrine convert` → `vitrine ingest` → ...

Each converter writes `events.csv` (and `items.csv` / `users.csv` when the log has them) in
the contract's columns; `vitrine ingest --events OUT/events.csv --items OUT/items.csv ...`
validates them like any other log. Event ids are derived from the source rows, so converting
and ingesting twice changes nothing.

Labels (how each log's behaviour maps onto impression / click / add_to_cart / purchase):
- `movielens` (MovieLens 100K `u.data`, `u.item`, `u.user`; explicit ratings, no
  impressions): every rating is a `click` at its time; a rating of 4 or 5 is also a
  `purchase` one second later (the user liked what they took). Items: title, the first genre
  as category (`movie/<genre>`), every genre as tags, the release date as `created_at`.
  Users: age band and gender.
- `taobao` (Alibaba's Taobao UserBehavior CSV: user, item, category, behaviour, unix time;
  no header): `pv` → `click`, `cart` and `fav` → `add_to_cart` (both are intent short of
  buying), `buy` → `purchase`. Items: the category id.

Both logs lack impressions: training samples negatives (`spark_jobs/samples.py`), and
evaluation counts clicks, carts and purchases as engagement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from vitrine.errors import VitrineError

ML_GENRES = ("unknown", "action", "adventure", "animation", "children", "comedy", "crime", "documentary", "drama",
             "fantasy", "film-noir", "horror", "musical", "mystery", "romance", "sci-fi", "thriller", "war",
             "western")
TAOBAO_TYPES = {"pv": "click", "cart": "add_to_cart", "fav": "add_to_cart", "buy": "purchase"}


@dataclass
class Converted:
    source: str
    events: pd.DataFrame
    items: pd.DataFrame | None = None
    users: pd.DataFrame | None = None

    def write(self, out: Path) -> dict[str, Path]:
        out.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name in ("events", "items", "users"):
            frame = getattr(self, name)
            if frame is not None:
                paths[name] = out / f"{name}.csv"
                frame.to_csv(paths[name], index=False)
        return paths

    def render(self) -> str:
        ev = self.events
        types = ", ".join(f"{k} {v:,}" for k, v in ev["event_type"].value_counts().sort_index().items())
        span = f"{ev['event_time'].min()} .. {ev['event_time'].max()}"
        return (f"{self.source}: {len(ev):,} events ({types}), {ev['user_id'].nunique():,} users, "
                f"{ev['item_id'].nunique():,} items, {span}")


def _find(src: Path, names: Sequence[str]) -> Path:
    for name in names:
        if (src / name).exists():
            return src / name
    raise VitrineError(f"{src}: none of {', '.join(names)} found")


def _age_band(age: pd.Series) -> pd.Series:
    bins = [-1, 17, 24, 34, 44, 54, 200]
    labels = ["<18", "18-24", "25-34", "35-44", "45-54", "55+"]
    return pd.cut(age, bins=bins, labels=labels).astype(str)


def movielens(src: Path) -> Converted:
    """MovieLens 100K from a directory holding `u.data` (or `u.data.gz`), `u.item`, `u.user`."""
    src = Path(src)
    ratings = pd.read_csv(_find(src, ["u.data", "u.data.gz"]), sep="\t", header=None,
                          names=["user", "item", "rating", "ts"], dtype={"user": str, "item": str})
    if ratings.empty or ratings[["rating", "ts"]].isna().any().any():
        raise VitrineError(f"{src}: u.data must hold user, item, rating, unix time per tab-separated line")
    time = pd.to_datetime(ratings["ts"], unit="s", utc=True)
    clicks = pd.DataFrame({"event_id": "ml-" + ratings["user"] + "-" + ratings["item"],
                           "event_time": time, "user_id": ratings["user"], "item_id": ratings["item"],
                           "event_type": "click"})
    liked = ratings["rating"] >= 4
    buys = clicks[liked].assign(event_id=lambda d: d["event_id"] + "-p", event_type="purchase",
                                event_time=lambda d: d["event_time"] + pd.Timedelta(seconds=1))
    events = pd.concat([clicks, buys], ignore_index=True).sort_values(["event_time", "event_id"], kind="stable")
    events["event_time"] = events["event_time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")

    items = users = None
    item_path = src / "u.item"
    if item_path.exists():
        raw = pd.read_csv(item_path, sep="|", header=None, encoding="latin-1", dtype=str)
        flags = raw.iloc[:, 5:5 + len(ML_GENRES)].astype(int).to_numpy().astype(bool)
        genres = ["|".join(g for g, on in zip(ML_GENRES, row, strict=True) if on) for row in flags]
        first = [g.split("|")[0] if g else "unknown" for g in genres]
        released = pd.to_datetime(raw[2], format="%d-%b-%Y", errors="coerce", utc=True)
        items = pd.DataFrame({"item_id": raw[0], "title": raw[1].fillna(""), "category": [f"movie/{g}" for g in first],
                              "tags": genres,
                              "created_at": released.dt.strftime("%Y-%m-%dT%H:%M:%SZ").where(released.notna(), "")})
    user_path = src / "u.user"
    if user_path.exists():
        raw = pd.read_csv(user_path, sep="|", header=None, names=["user_id", "age", "gender", "occupation", "zip"],
                          dtype={"user_id": str, "gender": str, "zip": str})
        gender = raw["gender"].str.lower()
        users = pd.DataFrame({"user_id": raw["user_id"], "age_band": _age_band(raw["age"]),
                              "gender": gender.where(gender.isin(["f", "m"]), "u"),
                              "region": raw["zip"].str[:1].fillna("")})
    return Converted("movielens", events.reset_index(drop=True), items, users)


def taobao(src: Path) -> Converted:
    """Taobao UserBehavior CSV(s): a file, or a directory of `*.csv` / `*.csv.gz` files."""
    src = Path(src)
    files = sorted([*src.glob("*.csv"), *src.glob("*.csv.gz")]) if src.is_dir() else [src]
    if not files:
        raise VitrineError(f"{src}: no UserBehavior CSV files")
    raw = pd.concat([pd.read_csv(f, header=None, names=["user", "item", "category", "behavior", "ts"], dtype=str)
                     for f in files], ignore_index=True)
    bad = ~raw["behavior"].isin(list(TAOBAO_TYPES)) | pd.to_numeric(raw["ts"], errors="coerce").isna()
    if bad.all():
        raise VitrineError(f"{src}: no row has a known behaviour ({', '.join(TAOBAO_TYPES)}) and a unix time")
    # unknown behaviours and unparsable times are left for ingest to reject with their reason
    time = pd.to_datetime(pd.to_numeric(raw["ts"], errors="coerce"), unit="s", utc=True)
    events = pd.DataFrame({
        "event_id": "tb-" + raw["user"] + "-" + raw["item"] + "-" + raw["behavior"] + "-" + raw["ts"],
        "event_time": time.dt.strftime("%Y-%m-%dT%H:%M:%SZ").where(time.notna(), raw["ts"]),
        "user_id": raw["user"], "item_id": raw["item"],
        "event_type": raw["behavior"].map(TAOBAO_TYPES).fillna(raw["behavior"])})
    events = events.drop_duplicates("event_id")
    items = raw.drop_duplicates("item", keep="last")[["item", "category"]].rename(
        columns={"item": "item_id", "category": "category"})
    items["category"] = "cat/" + items["category"]
    return Converted("taobao", events.reset_index(drop=True), items.reset_index(drop=True))


CONVERTERS: dict[str, Callable[[Path], Converted]] = {"movielens": movielens, "taobao": taobao}


def convert(kind: str, src: Path, out: Path) -> tuple[Converted, dict[str, Path]]:
    if kind not in CONVERTERS:
        raise VitrineError(f"unknown log kind {kind!r}; known: {', '.join(CONVERTERS)}")
    if not Path(src).exists():
        raise VitrineError(f"{src} does not exist")
    converted = CONVERTERS[kind](Path(src))
    return converted, converted.write(Path(out))


def shipped(kind: str) -> Path:
    """The real-log extract shipped in `data/real/` for `kind` (see data/real/README.md)."""
    root = Path(__file__).resolve().parents[2] / "data" / "real"
    path = {"movielens": root / "ml-100k", "taobao": root / "taobao-userbehavior"}.get(kind)
    if path is None or not path.exists():
        raise VitrineError(f"no shipped extract for {kind!r} under {root}")
    return path
