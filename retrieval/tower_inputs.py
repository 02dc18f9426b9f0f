"""Two-tower model inputs: which feature-service columns feed which tower input (derived from
the service's fields, `vitrine/featurestore/contract.py`), and how a frame of them — or one
request's online feature dicts — becomes the arrays the towers (and their SavedModel
signatures) take. Shared by training and serving, so both prepare inputs identically.

The towers' inputs, in the service's order (every input is named by its Feast full name):
- user tower: the user id; categorical user fields (strings); numeric user fields (log1p,
  standardised); bags (`encoding: bag`, e.g. the top categories: a mean embedding in the
  vocabulary of the item field they `match`); item-id lists (`encoding: item_ids`, e.g. the
  recent items: a mean of the shared item-id embedding);
- item tower: the item id; categorical and numeric item fields; text fields (`encoding: text`,
  e.g. the title: a mean embedding of its first tokens).

The layout is saved with each version (`tower_layout.json`) and rebuilt from there at serving.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from vitrine.featurestore.contract import ContractError, ServiceField

LIST_WIDTH = {"bag": 3, "item_ids": 20, "text": 8}  # values kept per list input (top categories, recent items, tokens)
RECENT = LIST_WIDTH["item_ids"]
TOP_CATEGORIES = LIST_WIDTH["bag"]
TITLE_TOKENS = LIST_WIDTH["text"]
TITLE_VOCABULARY = 5000  # most frequent tokens per text field


class TowerLayout:
    """The towers' inputs for one feature service (see the module docstring)."""

    def __init__(self, service: str, fields: Iterable[ServiceField]) -> None:
        self.service = service
        self.fields = list(fields)
        self.user_categorical: list[str] = []
        self.user_numeric: list[str] = []
        self.user_bags: dict[str, str] = {}  # bag column → the item categorical column it matches
        self.user_item_lists: list[str] = []
        self.item_categorical: list[str] = []
        self.item_numeric: list[str] = []
        self.item_text: list[str] = []
        self.ignored: dict[str, str] = {}
        matches: dict[str, str] = {}
        for f in self.fields:
            encoding = f.encoding
            if f.entity not in ("user", "item"):
                raise ContractError(f"{f.column}: the two-tower reads user and item views only")
            user = f.entity == "user"
            if encoding == "categorical":
                (self.user_categorical if user else self.item_categorical).append(f.column)
            elif encoding == "numeric":
                (self.user_numeric if user else self.item_numeric).append(f.column)
            elif encoding == "bag" and user:
                matches[f.column] = f.tags["matches"]
            elif encoding == "item_ids" and user:
                self.user_item_lists.append(f.column)
            elif encoding == "text" and not user:
                self.item_text.append(f.column)
            else:
                self.ignored[f.column] = f"encoding {encoding} ({f.dtype}) on a {f.entity} field"
        by_feature = {c.split("__", 1)[1]: c for c in self.item_categorical}
        for column, feature in matches.items():
            if feature not in by_feature:
                raise ContractError(f"{column}: it matches item field {feature!r}, which service {service} "
                                    f"does not list as a categorical item field")
            self.user_bags[column] = by_feature[feature]

    @property
    def user_columns(self) -> list[str]:
        return [*self.user_categorical, *self.user_numeric, *self.user_bags, *self.user_item_lists]

    @property
    def item_columns(self) -> list[str]:
        return [*self.item_categorical, *self.item_numeric, *self.item_text]

    def views(self, entity: str) -> list[str]:
        """The feature views of `entity` the layout reads, in the service's order."""
        return list(dict.fromkeys(f.view for f in self.fields if f.entity == entity))

    def to_json(self) -> dict:
        return {"service": self.service, "fields": [f.to_json() for f in self.fields]}

    @classmethod
    def from_json(cls, d: dict) -> TowerLayout:
        return cls(d["service"], [ServiceField.from_json(f) for f in d["fields"]])


@dataclass
class Vocabularies:
    users: list[str]
    items: list[str]
    values: dict[str, list[str]] = field(default_factory=dict)  # input column → its values
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


def text_tokens(series: pd.Series) -> np.ndarray:
    return _pad_lists(series.fillna("").astype(str).str.lower().str.split(), TITLE_TOKENS)


def _col(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name] if name in frame else pd.Series([None] * len(frame), index=frame.index)


def user_inputs(layout: TowerLayout, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """User-tower inputs from a frame of the service's user columns (plus `user_id`)."""
    out = {"user_id": _strings(frame["user_id"])}
    for c in layout.user_categorical:
        out[c] = _strings(_col(frame, c))
    for c in layout.user_numeric:
        out[c] = _log_numeric(_col(frame, c))
    for c in layout.user_bags:
        out[c] = _pad_lists(_col(frame, c), LIST_WIDTH["bag"])
    for c in layout.user_item_lists:
        out[c] = _pad_lists(_col(frame, c), LIST_WIDTH["item_ids"])
    return out


def item_inputs(layout: TowerLayout, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Item-tower inputs from a frame of the service's item columns (plus `item_id`)."""
    out = {"item_id": _strings(frame["item_id"])}
    for c in layout.item_categorical:
        out[c] = _strings(_col(frame, c))
    for c in layout.item_numeric:
        out[c] = _log_numeric(_col(frame, c))
    for c in layout.item_text:
        out[c] = text_tokens(_col(frame, c))
    return out


def _scalar_string(v) -> str:
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)


def _clipped(v) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return 0.0
    return x if x > 0 else 0.0  # NaN and negatives → 0, as _log_numeric


def user_inputs_from_rows(layout: TowerLayout, user_ids: list[str], rows: list[dict]) -> dict[str, np.ndarray]:
    """`user_inputs` for online feature dicts (Feast full names), without pandas: the
    serving path, a few microseconds per user. Same arrays as `user_inputs(frame)`."""
    out = {"user_id": np.array([str(u) for u in user_ids], dtype=object)}
    for c in layout.user_categorical:
        out[c] = np.array([_scalar_string(r.get(c)) for r in rows], dtype=object)
    for c in layout.user_numeric:
        out[c] = np.log1p(np.array([_clipped(r.get(c)) for r in rows], dtype=np.float32))
    for c in layout.user_bags:
        out[c] = _pad_lists([r.get(c) for r in rows], LIST_WIDTH["bag"])
    for c in layout.user_item_lists:
        out[c] = _pad_lists([r.get(c) for r in rows], LIST_WIDTH["item_ids"])
    return out
