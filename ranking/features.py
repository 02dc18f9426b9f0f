"""Ranking features: which Feast columns (full feature names, as the historical join and
`get_online_features(..., full_feature_names=True)` return them) feed which model input, and
how a frame of training rows — or one request's user, candidates and context — becomes the
arrays the models take. Shared by training and serving, so both encode identically.

Values are put in one of three forms:
- categorical: a string (numbers as their integer text), looked up in a vocabulary fitted on
  the training rows; index 0 is "unknown or missing" (new users, new brands);
- numeric: signed log1p, then standardised with training statistics, clipped to ±5;
  missing or non-finite values become 0 (the training mean), with a known/unknown flag per
  feature view so "no history" is visible to the model;
- bags: the user's top categories / brands with their preference weights (padded to 3).

`user_realtime__*` is not a model input: its offline table only logs what the collector
pushed, so training rows see nulls and serving would feed values the model never saw.
`als_user_factors` neither: the table is one latest snapshot, never valid at a training
row's time (the point-in-time join leaves it null).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ranking.context import context_features

WINDOWS = [f"{c}_{w}d" for w in (1, 7, 30) for c in ("impressions", "clicks", "carts", "purchases")]

# user side: one value per user (broadcast over the candidates)
USER_CATEGORICAL = {"segment": "user_behaviour__segment", "age_band": "user_profile__age_band",
                    "gender": "user_profile__gender", "region": "user_profile__region",
                    "member_level": "user_profile__member_level"}
USER_NUMERIC = [*(f"user_behaviour__{w}" for w in WINDOWS),
                *(f"user_behaviour__{c}" for c in ("spend_30d", "ctr_30d", "cvr_30d", "days_since_last_event",
                                                    "days_since_last_positive", "days_since_last_purchase",
                                                    "price_level"))]
# bag name → (list column, weight column, the vocabulary it shares with a candidate field)
USER_BAGS = {"category": ("user_preferences__top_categorys", "user_preferences__top_category_weights"),
             "brand": ("user_preferences__top_brands", "user_preferences__top_brand_weights")}
BAG_WIDTH = 3
USER_KNOWN = {"user_known": "user_behaviour__segment", "prefs_known": "user_preferences__top_categorys"}

# candidate side: one value per candidate row (item, merchant and request context)
ROW_CATEGORICAL = {"category": "item_attributes__category", "top_category": "item_attributes__top_category",
                   "brand": "item_attributes__brand", "merchant": "item_attributes__merchant_id",
                   "hour": "context__hour_of_day", "weekday": "context__day_of_week",
                   "device": "context__device_idx"}
ROW_NUMERIC = [*(f"item_stats__{w}" for w in WINDOWS),
               *(f"item_stats__{c}" for c in ("revenue_30d", "ctr_30d", "cvr_30d", "heat", "age_days",
                                               "days_since_last_event")),
               "item_attributes__price", "item_attributes__rating", "item_attributes__is_online",
               *(f"merchant_stats__{c}" for c in ("impressions_30d", "clicks_30d", "purchases_30d", "revenue_30d",
                                                   "ctr_30d", "cvr_30d", "listed_items", "merchant_rating")),
               "context__is_weekend", "context__price_vs_user"]
ROW_KNOWN = {"item_known": "item_stats__heat", "merchant_known": "merchant_stats__ctr_30d"}
# user × candidate crosses: the user's preference weight of the candidate's category / brand
CROSSES = {"category_pref": ("category", "category"), "brand_pref": ("brand", "brand")}

CLIP = 5.0
BUCKETS = 32          # quantile buckets per numeric column (a learnt embedding each)
SLOTS = BUCKETS + 1   # ids per column: 0 missing, 1..BUCKETS


def as_strings(values: Any, n: int) -> np.ndarray:
    """Object array of `n` strings or None: numbers as their integer text when integral."""
    if values is None:
        return np.full(n, None, dtype=object)
    arr = np.asarray(values)
    if arr.ndim != 1:
        arr = arr.ravel() if arr.dtype != object or arr.ndim == 0 else np.asarray(list(values), dtype=object)
    if len(arr) == 1 and n != 1:
        arr = np.repeat(arr, n)
    if arr.dtype.kind in "iu":  # fast paths: integer codes, floats that hold integers
        return arr.astype(str).astype(object)
    if arr.dtype.kind == "f":
        ok = np.isfinite(arr)
        if np.all(arr[ok] == np.round(arr[ok])):
            out = np.full(len(arr), None, dtype=object)
            out[ok] = arr[ok].astype(np.int64).astype(str)
            return out
    if arr.dtype.kind in "US":
        return arr.astype(str).astype(object)
    arr = arr.astype(object)
    kinds = set(map(type, arr))  # strings (and missing values) as they come from pandas: nothing to convert
    if kinds <= {str}:
        return arr
    if kinds <= {str, type(None)}:
        return arr.copy()
    out = np.empty(len(arr), dtype=object)
    for i, v in enumerate(arr):
        if v is None or (isinstance(v, float) and not np.isfinite(v)) or v is np.nan:
            out[i] = None
        elif isinstance(v, (bool, np.bool_)):
            out[i] = str(bool(v))
        elif isinstance(v, (int, np.integer)) or (isinstance(v, (float, np.floating)) and float(v).is_integer()):
            out[i] = str(int(v))
        else:
            out[i] = str(v)
    return out


def as_floats(values: Any, n: int) -> np.ndarray:
    """float64 array of `n` values; None, strings and non-finite values become NaN."""
    if values is None:
        return np.full(n, np.nan)
    arr = np.asarray(values)
    if arr.dtype == object:
        arr = np.array([_to_float(v) for v in arr.ravel()], dtype=np.float64)
    arr = arr.astype(np.float64, copy=False).ravel()
    if len(arr) == 1 and n != 1:
        arr = np.repeat(arr, n)
    return np.where(np.isfinite(arr), arr, np.nan)


def _to_float(v: Any) -> float:
    try:
        return float(v) if v is not None else np.nan
    except (TypeError, ValueError):
        return np.nan


def signed_log(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def pad_bag(lists: Any, weights: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(strings [n, 3] with None padding, float weights [n, 3] with 0 padding)."""
    names = np.full((n, BAG_WIDTH), None, dtype=object)
    wts = np.zeros((n, BAG_WIDTH), dtype=np.float64)
    lists = [None] * n if lists is None else list(lists)
    weights = [None] * n if weights is None else list(weights)
    for i, (ls, ws) in enumerate(zip(lists, weights, strict=True)):
        if ls is None or isinstance(ls, float):
            continue
        ls = list(ls)[:BAG_WIDTH]
        ws = [1.0 / len(ls)] * len(ls) if ws is None or isinstance(ws, float) else list(ws)[:len(ls)]
        for j, (name, w) in enumerate(zip(ls, ws, strict=False)):
            names[i, j] = None if name is None else str(name)
            wts[i, j] = _to_float(w) if np.isfinite(_to_float(w)) else 0.0
    return names, wts


@dataclass
class Vocabulary:
    """Index 0 is unknown / missing; values 1..len."""

    values: list[str]
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index = {v: i + 1 for i, v in enumerate(self.values)}

    def __len__(self) -> int:
        return len(self.values) + 1

    def lookup(self, strings: np.ndarray) -> np.ndarray:
        get = self._index.get
        flat = strings.ravel()
        return np.fromiter((get(s, 0) for s in flat), dtype=np.int64, count=len(flat)).reshape(strings.shape)


def fit_vocabulary(*arrays: np.ndarray, min_count: int = 1) -> Vocabulary:
    counts = Counter(v for a in arrays for v in a.ravel() if v is not None)
    return Vocabulary(sorted(v for v, c in counts.items() if c >= min_count))


@dataclass
class NumericStats:
    """Standardisation (mean, std of signed log1p) and quantile bucket edges per column."""

    mean: list[float]
    std: list[float]
    edges: list[list[float]] = field(default_factory=list)

    @classmethod
    def fit(cls, x: np.ndarray, buckets: int = BUCKETS) -> NumericStats:
        t = signed_log(x)
        mean = np.nanmean(t, axis=0) if len(t) else np.zeros(x.shape[1])
        std = np.nanstd(t, axis=0) if len(t) else np.ones(x.shape[1])
        mean = np.nan_to_num(mean)
        std = np.where(np.nan_to_num(std) > 1e-6, np.nan_to_num(std), 1.0)
        qs = np.linspace(0, 1, buckets + 1)[1:-1]
        edges = []
        for j in range(t.shape[1]):
            col = t[:, j][~np.isnan(t[:, j])]
            edges.append([float(v) for v in np.unique(np.quantile(col, qs))] if len(col) else [])
        return cls([float(v) for v in mean], [float(v) for v in std], edges)

    def apply(self, x: np.ndarray) -> np.ndarray:
        z = (signed_log(x) - np.asarray(self.mean)) / np.asarray(self.std)
        return np.clip(np.nan_to_num(z, nan=0.0), -CLIP, CLIP).astype(np.float32)

    def buckets(self, x: np.ndarray) -> np.ndarray:
        """Global bucket ids [n, F]: column j's bucket b is j · SLOTS + b; b = 0 is missing."""
        t = signed_log(x)
        out = np.empty(t.shape, dtype=np.int64)
        for j, e in enumerate(self.edges):
            b = np.searchsorted(np.asarray(e, dtype=np.float64), t[:, j], side="right") + 1
            out[:, j] = j * SLOTS + np.where(np.isnan(t[:, j]), 0, b)
        return out


Columns = Mapping[str, Any]


def request_rows(user: Columns, items: Columns, request: Columns) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Serving inputs as column mappings: the user's (length 1) and the candidates' (length n),
    the candidates' including the context features computed from the request."""
    if "request_unix_s" not in request:
        raise ValueError("request needs 'request_unix_s' (unix seconds) to compute the context features")
    lengths = {len(v) if hasattr(v, "__len__") else 1 for v in items.values() if v is not None}
    if len(lengths) > 1:
        raise ValueError(f"candidate feature arrays differ in length: {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    prices = items.get("item_attributes__price")
    level = user.get("user_behaviour__price_level")
    ctx = context_features(request["request_unix_s"], request.get("device_code"),
                           as_floats(prices, n) if n else np.zeros(0), level)
    users = {k: [v] for k, v in user.items()}
    return users, {**items, **ctx}, n


def _col(cols: Columns, name: str, n: int) -> Any:
    value = cols.get(name)
    if value is None:
        return None
    if hasattr(value, "to_numpy"):
        return value.to_numpy()
    return value


class TeacherEncoder:
    """Vocabularies and numeric statistics for the MMoE teacher, fitted on training rows and
    saved as JSON next to the SavedModel. `encode(users, rows)` gives the signature inputs:
    user arrays of length m (1 at serving, one per row in training), candidate arrays of length n."""

    def __init__(self, vocabularies: dict[str, Vocabulary], user_stats: NumericStats, row_stats: NumericStats):
        self.vocabularies = vocabularies
        self.user_stats = user_stats
        self.row_stats = row_stats

    # -- layout, shared with the model ----------------------------------------------------
    user_numeric: ClassVar[list[str]] = [*USER_NUMERIC, *USER_KNOWN]
    row_numeric: ClassVar[list[str]] = [*ROW_NUMERIC, *ROW_KNOWN, *CROSSES]

    def vocabulary_sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.vocabularies.items()}

    @classmethod
    def fit(cls, frame) -> TeacherEncoder:
        n = len(frame)
        vocab: dict[str, Vocabulary] = {}
        for name, column in {**USER_CATEGORICAL, **ROW_CATEGORICAL}.items():
            extra = []
            if name in USER_BAGS:  # the bag's values share the candidate field's vocabulary
                lists, weights = USER_BAGS[name]
                extra = [pad_bag(_col(frame, lists, n), _col(frame, weights, n), n)[0]]
            vocab[name] = fit_vocabulary(as_strings(_col(frame, column, n), n), *extra, min_count=2)
        enc = cls(vocab, NumericStats([], []), NumericStats([], []))
        raw_user, raw_rows = enc._raw_numeric(frame, frame, n, n)
        enc.user_stats, enc.row_stats = NumericStats.fit(raw_user), NumericStats.fit(raw_rows)
        return enc

    def _raw_numeric(self, users: Columns, rows: Columns, m: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        user = [as_floats(_col(users, c, m), m) for c in USER_NUMERIC]
        user += [np.array([0.0 if v is None else 1.0 for v in as_strings(_col(users, c, m), m)])
                 if c.endswith("segment") else _known_list(_col(users, c, m), m) for c in USER_KNOWN.values()]
        row = [as_floats(_col(rows, c, n), n) for c in ROW_NUMERIC]
        row += [np.isfinite(as_floats(_col(rows, c, n), n)).astype(np.float64) for c in ROW_KNOWN.values()]
        for bag, row_field in CROSSES.values():
            row.append(preference_weight(users, rows, bag, ROW_CATEGORICAL[row_field], m, n))
        return np.stack(user, axis=1) if user else np.zeros((m, 0)), np.stack(row, axis=1)

    def encode(self, users: Columns, rows: Columns, m: int, n: int) -> dict[str, np.ndarray]:
        """Signature inputs. `m` is 1 (one user for all candidates) or `n` (one per row)."""
        if m not in (1, n):
            raise ValueError(f"user columns must have 1 row or one per candidate ({n}), not {m}")
        out: dict[str, np.ndarray] = {}
        out["user_cat"] = np.stack([self.vocabularies[k].lookup(as_strings(_col(users, c, m), m))
                                    for k, c in USER_CATEGORICAL.items()], axis=1)
        for bag, (lists, weights) in USER_BAGS.items():
            names, wts = pad_bag(_col(users, lists, m), _col(users, weights, m), m)
            out[f"{bag}_bag"] = self.vocabularies[bag].lookup(names)
            out[f"{bag}_bag_weights"] = wts.astype(np.float32)
        out["row_cat"] = np.stack([self.vocabularies[k].lookup(as_strings(_col(rows, c, n), n))
                                   for k, c in ROW_CATEGORICAL.items()], axis=1).reshape(n, len(ROW_CATEGORICAL))
        raw_user, raw_rows = self._raw_numeric(users, rows, m, n)
        out["user_num"] = self.user_stats.apply(raw_user)
        out["row_num"] = self.row_stats.apply(raw_rows).reshape(n, len(self.row_numeric))
        out["user_bucket"] = self.user_stats.buckets(raw_user)
        out["row_bucket"] = self.row_stats.buckets(raw_rows).reshape(n, len(self.row_numeric))
        return out

    def encode_frame(self, frame) -> dict[str, np.ndarray]:
        return self.encode(frame, frame, len(frame), len(frame))

    def to_json(self) -> dict:
        return {"vocabularies": {k: v.values for k, v in self.vocabularies.items()},
                "user_stats": self.user_stats.__dict__, "row_stats": self.row_stats.__dict__,
                "user_numeric": self.user_numeric, "row_numeric": self.row_numeric,
                "user_categorical": USER_CATEGORICAL, "row_categorical": ROW_CATEGORICAL}

    @classmethod
    def from_json(cls, d: dict) -> TeacherEncoder:
        if d.get("user_numeric") != cls.user_numeric or d.get("row_numeric") != cls.row_numeric:
            raise ValueError("the saved encoder's feature layout differs from this code's: retrain the model")
        return cls({k: Vocabulary(v) for k, v in d["vocabularies"].items()},
                   NumericStats(**d["user_stats"]), NumericStats(**d["row_stats"]))


def preference_weight(users: Columns, rows: Columns, bag: str, row_column: str, m: int, n: int) -> np.ndarray:
    """The user's preference weight of each candidate's value (e.g. its category in the user's
    top categories), 0 when absent. `m` user rows: 1 (broadcast) or n."""
    lists, weights = USER_BAGS[bag]
    names, wts = pad_bag(_col(users, lists, m), _col(users, weights, m), m)
    values = as_strings(_col(rows, row_column, n), n)
    if m == 1 and n > 1:  # one request: a dict of the user's few preferences, one lookup per candidate
        prefs: dict[str, float] = {}
        for name, w in zip(names[0], wts[0], strict=True):
            if name is not None:
                prefs[name] = prefs.get(name, 0.0) + float(w)
        get = prefs.get
        return np.fromiter((get(v, 0.0) for v in values), dtype=np.float64, count=n)
    hit = (names == values[:, None]) & (values[:, None] != None)  # noqa: E711 (elementwise)
    return (hit * wts).sum(axis=1)


def _known_list(values: Any, n: int) -> np.ndarray:
    if values is None:
        return np.zeros(n)
    values = list(values)
    if len(values) == 1 and n != 1:
        values = values * n
    return np.array([0.0 if v is None or isinstance(v, float) else 1.0 for v in values])
