"""What recall needs from the feature tables (Feast's offline store), as of a point in time:
the item catalogue, neighbour lists, ALS item factors, and users' rows in Feast full
feature names. Serving loads these once at start (and on reload); the evaluation loads
them as of its hold-out split, so nothing after the split is visible.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from retrieval.routes import Catalogue

USER_VIEWS = ("user_behaviour", "user_preferences", "user_profile", "als_user_factors")


def latest_rows(path: Path, key: str, as_of: datetime | None = None, columns: list[str] | None = None
                ) -> pd.DataFrame:
    """Each key's latest row at or before `as_of` (all rows when None)."""
    if not path.exists():
        return pd.DataFrame(columns=[key, "event_timestamp", *(columns or [])])
    df = pd.read_parquet(path, columns=None if columns is None else [key, "event_timestamp", *columns])
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    if as_of is not None:
        df = df[df["event_timestamp"] <= pd.Timestamp(as_of)]
    return df.sort_values(["event_timestamp", key], kind="stable").drop_duplicates(key, keep="last")


def _prefixed(df: pd.DataFrame, view: str, key: str) -> pd.DataFrame:
    """A view's rows in Feast full names (`<view>__<feature>`), without the row timestamp."""
    return df.drop(columns=["event_timestamp"]).rename(columns={c: f"{view}__{c}" for c in df if c != key})


ITEM_VIEWS = ("item_attributes", "item_stats")


def item_frame(features: Path, as_of: datetime | None = None, views: tuple[str, ...] = ITEM_VIEWS) -> pd.DataFrame:
    """Every item listed by `as_of`: latest attributes and stats (and the latest rows of any
    other item view in `views`, from `<features>/<view>`), in Feast full names
    (`item_attributes__category`, `item_stats__heat`, ...), sorted by item id."""
    attrs = latest_rows(features / "item_attributes", "item_id", as_of)
    if as_of is not None and "created_at" in attrs:
        created = pd.to_datetime(attrs["created_at"], utc=True)
        attrs = attrs[created.isna() | (created <= pd.Timestamp(as_of))]
    stats = latest_rows(features / "item_stats", "item_id", as_of)
    attrs, stats = _prefixed(attrs, "item_attributes", "item_id"), _prefixed(stats, "item_stats", "item_id")
    frame = catalogue_items(attrs, stats)
    for view in views:
        if view not in ITEM_VIEWS:
            frame = frame.merge(_prefixed(latest_rows(features / view, "item_id", as_of), view, "item_id"),
                                on="item_id", how="left")
    return frame.sort_values("item_id").reset_index(drop=True)


def catalogue_items(attributes: pd.DataFrame, stats: pd.DataFrame) -> pd.DataFrame:
    """The catalogue's items, from the latest rows of `item_attributes` and `item_stats` (Feast
    full names, an `item_id` column each): every listed item with its stats; only the stats'
    items when a log came without a catalogue. The evaluation's retriever and the serving item
    cache both take their rows from here."""
    return attributes.merge(stats, on="item_id", how="left") if len(attributes) else stats


def catalogue_from(items: pd.DataFrame, as_of: datetime | None = None) -> Catalogue:
    def col(name: str, default) -> pd.Series:
        return items[name] if name in items else pd.Series(default, index=items.index)

    age = pd.to_numeric(col("item_stats__age_days", np.nan), errors="coerce")
    if as_of is not None and "item_attributes__created_at" in items:  # items without stats yet
        created = pd.to_datetime(items["item_attributes__created_at"], utc=True)
        age = age.fillna((pd.Timestamp(as_of) - created).dt.total_seconds() / 86400)
    online = col("item_attributes__is_online", True).astype("boolean").fillna(True)

    def count(*names: str) -> np.ndarray:
        return sum(pd.to_numeric(col(n, 0), errors="coerce").fillna(0).to_numpy(np.float64) for n in names)

    # engagement (clicks + carts + purchases) and clicks over the stats' windows
    signals = {f"{kind}_{w}d": count(*[f"item_stats__{c}_{w}d" for c in cols])
               for w in (1, 7, 30) for kind, cols in (("clicks", ("clicks",)),
                                                       ("engaged", ("clicks", "carts", "purchases")))}
    return Catalogue(
        ids=items["item_id"].astype(str).to_numpy(dtype=object),
        category=col("item_attributes__category", "").fillna("").astype(str).to_numpy(dtype=object),
        brand=col("item_attributes__brand", "").fillna("").astype(str).to_numpy(dtype=object),
        online=online.to_numpy(dtype=bool),
        heat=pd.to_numeric(col("item_stats__heat", 0.0), errors="coerce").fillna(0.0).to_numpy(np.float64),
        age_days=age.fillna(np.inf).to_numpy(np.float64),
        signals=signals,
    )


def neighbour_lists(path: Path, catalogue: Catalogue, items_col: str, scores_col: str,
                    as_of: datetime | None = None) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Item → (neighbour rows, similarities), neighbours outside the catalogue dropped."""
    df = latest_rows(path, "item_id", as_of, [items_col, scores_col])
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    row_of = catalogue.row_of
    for item, neighbours, scores in zip(df["item_id"], df[items_col], df[scores_col], strict=True):
        row = row_of.get(item)
        if row is None or neighbours is None:
            continue
        pairs = [(row_of[n], float(s)) for n, s in zip(neighbours, scores, strict=True) if n in row_of]
        if pairs:
            rows, sims = zip(*pairs, strict=True)
            out[row] = (np.asarray(rows, np.int64), np.asarray(sims, np.float32))
    return out


def factor_matrix(path: Path, catalogue: Catalogue, column: str, as_of: datetime | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(catalogue rows, vectors) for the items that have factors."""
    df = latest_rows(path, "item_id", as_of, [column])
    df = df[df["item_id"].isin(catalogue.row_of) & df[column].notna()]
    if df.empty:
        return np.empty(0, np.int64), np.empty((0, 0), np.float32)
    rows = np.array([catalogue.row_of[i] for i in df["item_id"]], np.int64)
    return rows, np.stack(df[column].to_numpy()).astype(np.float32)


def user_frame(features: Path, as_of: datetime | None = None, users: list[str] | None = None,
               views: tuple[str, ...] = USER_VIEWS) -> pd.DataFrame:
    """Users' latest rows of every user view (recall's, and any other in `views`), in Feast full
    names, one row per user — what `get_online_features` would have served at `as_of`."""
    frame: pd.DataFrame | None = None
    for view in dict.fromkeys([*USER_VIEWS, *views]):
        df = latest_rows(features / view, "user_id", as_of)
        if users is not None:
            df = df[df["user_id"].isin(users)]
        df = _prefixed(df, view, "user_id")
        frame = df if frame is None else frame.merge(df, on="user_id", how="outer")
    assert frame is not None
    if users is not None:
        frame = pd.DataFrame({"user_id": users}).merge(frame, on="user_id", how="left")
    return frame.reset_index(drop=True)
