"""Two-tower model inputs: which feature-service columns feed which tower input, and how a
frame of them becomes the arrays the towers (and their SavedModel signatures) take.

Shared by training and serving, so both prepare inputs identically.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

USER_CATEGORICAL = ("segment", "age_band", "gender", "region")
USER_NUMERIC = ("clicks_30d", "purchases_30d", "ctr_30d", "cvr_30d", "price_level")
ITEM_CATEGORICAL = ("category", "top_category", "brand")
ITEM_NUMERIC = ("price", "ctr_30d", "heat", "age_days")
RECENT = 20  # recent items per user
TOP_CATEGORIES = 3
TITLE_TOKENS = 8


@dataclass
class Vocabularies:
    users: list[str]
    items: list[str]
    values: dict[str, list[str]] = field(default_factory=dict)
    numeric_stats: dict[str, tuple[float, float]] = field(default_factory=dict)  # mean, std of log1p

    def to_json(self) -> dict:
        return {"users": self.users, "items": self.items, "values": self.values,
                "numeric_stats": {k: list(v) for k, v in self.numeric_stats.items()}}

    @classmethod
    def from_json(cls, d: dict) -> Vocabularies:
        return cls(d["users"], d["items"], d["values"], {k: tuple(v) for k, v in d["numeric_stats"].items()})


def _strings(series: pd.Series) -> np.ndarray:
    return series.fillna("").astype(str).to_numpy(dtype=object)


def _pad_lists(values, width: int) -> np.ndarray:
    """[n, width] strings from list values (a Series or a plain list; None/NaN = empty)."""
    values = values.tolist() if hasattr(values, "tolist") else list(values)
    out = np.full((len(values), width), "", dtype=object)
    for i, value in enumerate(values):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        values = [str(v) for v in list(value)[:width]]
        out[i, : len(values)] = values
    return out


def _log_numeric(series: pd.Series) -> np.ndarray:
    x = pd.to_numeric(series, errors="coerce").fillna(0.0).clip(lower=0).to_numpy(dtype=np.float32)
    return np.log1p(x)


def title_tokens(series: pd.Series) -> np.ndarray:
    return _pad_lists(series.fillna("").astype(str).str.lower().str.split(), TITLE_TOKENS)


# model input → the two_tower_v1 column that feeds it (Feast full feature names, as both the
# historical join and `get_online_features(..., full_feature_names=True)` return them)
USER_COLUMNS = {
    "segment": "user_behaviour__segment", "age_band": "user_profile__age_band",
    "gender": "user_profile__gender", "region": "user_profile__region",
    **{n: f"user_behaviour__{n}" for n in USER_NUMERIC},
    "top_categorys": "user_preferences__top_categorys", "recent_items": "user_preferences__recent_items",
}
ITEM_COLUMNS = {
    "category": "item_attributes__category", "top_category": "item_attributes__top_category",
    "brand": "item_attributes__brand", "price": "item_attributes__price", "title": "item_attributes__title",
    "ctr_30d": "item_stats__ctr_30d", "heat": "item_stats__heat", "age_days": "item_stats__age_days",
}


def _col(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name] if name in frame else pd.Series([None] * len(frame), index=frame.index)


def user_inputs(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """User-tower inputs from a frame of two_tower_v1 columns (plus `user_id`)."""
    out = {"user_id": _strings(frame["user_id"])}
    for name in USER_CATEGORICAL:
        out[name] = _strings(_col(frame, USER_COLUMNS[name]))
    for name in USER_NUMERIC:
        out[name] = _log_numeric(_col(frame, USER_COLUMNS[name]))
    out["top_categorys"] = _pad_lists(_col(frame, USER_COLUMNS["top_categorys"]), TOP_CATEGORIES)
    out["recent_items"] = _pad_lists(_col(frame, USER_COLUMNS["recent_items"]), RECENT)
    return out


def item_inputs(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Item-tower inputs from a frame of two_tower_v1 columns (plus `item_id`)."""
    out = {"item_id": _strings(frame["item_id"])}
    for name in ITEM_CATEGORICAL:
        out[name] = _strings(_col(frame, ITEM_COLUMNS[name]))
    for name in ITEM_NUMERIC:
        out[name] = _log_numeric(_col(frame, ITEM_COLUMNS[name]))
    out["title"] = title_tokens(_col(frame, ITEM_COLUMNS["title"]))
    return out


def _scalar_string(v) -> str:
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)


def _clipped(v) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return 0.0
    return x if x > 0 else 0.0  # NaN and negatives → 0, as _log_numeric


def user_inputs_from_rows(user_ids: list[str], rows: list[dict]) -> dict[str, np.ndarray]:
    """`user_inputs` for online feature dicts (Feast full names), without pandas: the
    serving path, a few microseconds per user. Same arrays as `user_inputs(frame)`."""
    out = {"user_id": np.array([str(u) for u in user_ids], dtype=object)}
    for name in USER_CATEGORICAL:
        col = USER_COLUMNS[name]
        out[name] = np.array([_scalar_string(r.get(col)) for r in rows], dtype=object)
    for name in USER_NUMERIC:
        col = USER_COLUMNS[name]
        out[name] = np.log1p(np.array([_clipped(r.get(col)) for r in rows], dtype=np.float32))
    for name, width in (("top_categorys", TOP_CATEGORIES), ("recent_items", RECENT)):
        out[name] = _pad_lists([r.get(USER_COLUMNS[name]) for r in rows], width)
    return out
