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

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from ranking.context import PREFIX as CONTEXT_PREFIX
from ranking.context import context_features, price_vs_user, request_context
from ranking.encoding import (  # noqa: F401 (re-exported: the rankers' encoding lives in one place)
    BAG_WIDTH,
    BUCKETS,
    CLIP,
    SLOTS,
    NumericStats,
    Vocabulary,
    as_floats,
    as_strings,
    bag_entries,
    fit_vocabulary,
    pad_bag,
    signed_log,
    to_float,
    value_code,
    value_codes,
)

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

# the candidate positions that depend on the request, not on the item alone (filled per request;
# the rest can be computed once per item table)
REQUEST_CATEGORICAL = [j for j, c in enumerate(ROW_CATEGORICAL.values()) if c.startswith(CONTEXT_PREFIX)]
REQUEST_NUMERIC = [*(j for j, c in enumerate(ROW_NUMERIC) if c.startswith(CONTEXT_PREFIX)),
                   *range(len(ROW_NUMERIC) + len(ROW_KNOWN), len(ROW_NUMERIC) + len(ROW_KNOWN) + len(CROSSES))]

PRICE = "item_attributes__price"  # the context's price_vs_user divides it by the user's price level
PRICE_VS_USER = f"{CONTEXT_PREFIX}price_vs_user"
Columns = Mapping[str, Any]


def _candidate_count(items: Columns, request: Columns, n: int | None) -> int:
    if "request_unix_s" not in request:
        raise ValueError("request needs 'request_unix_s' (unix seconds) to compute the context features")
    lengths = {len(v) if hasattr(v, "__len__") else 1 for v in items.values() if v is not None}
    if n is not None:
        lengths.add(n)
    if len(lengths) > 1:
        raise ValueError(f"candidate feature arrays differ in length: {sorted(lengths)}")
    return lengths.pop() if lengths else 0


def request_rows(user: Columns, items: Columns, request: Columns,
                 n: int | None = None) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Serving inputs as column mappings: the user's (length 1) and the candidates' (length n,
    from the item arrays unless given), the candidates' including the context features computed
    from the request."""
    n = _candidate_count(items, request, n)
    prices = items.get(PRICE)
    ctx = context_features(request["request_unix_s"], request.get("device_code"),
                           as_floats(prices, n) if n else np.zeros(0), user.get("user_behaviour__price_level"))
    users = {k: [v] for k, v in user.items()}
    return users, {**items, **ctx}, n


def request_context_one(user: Columns, items: Columns, request: Columns, n: int) -> dict[str, Any]:
    """One request's context columns for `n` candidates given as an item part: one value for
    those that are the same for every candidate (hour, weekday, device), an array [n] for the
    price relative to the user's level — `request_rows`' context without n copies of each."""
    _candidate_count(items, request, n)
    ctx: dict[str, Any] = request_context(request["request_unix_s"], request.get("device_code"))
    ctx[PRICE_VS_USER] = price_vs_user(as_floats(items.get(PRICE), n) if n else np.zeros(0),
                                       user.get("user_behaviour__price_level"))
    return ctx


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
    # the candidates' item columns `encode` still reads when given an `item_part` (the crosses'
    # category and brand come as codes in the item part)
    request_columns: ClassVar[list[str]] = [PRICE]
    cross_columns: ClassVar[list[str]] = [ROW_CATEGORICAL[f] for _, f in CROSSES.values()]

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
        raw_rows = self._item_raw(rows, n)
        raw_rows[:, REQUEST_NUMERIC] = self._request_raw(users, rows, m, n)
        return self._user_raw(users, m), raw_rows

    @staticmethod
    def _user_raw(users: Columns, m: int) -> np.ndarray:
        if m == 1:  # one request's user: the values one by one (as as_floats / the known flags do)
            values = [first_value(_col(users, c, 1)) for c in USER_NUMERIC]
            row = [to_float(v) for v in values]
            for name, c in USER_KNOWN.items():
                v = first_value(_col(users, c, 1))
                missing = v is None or (isinstance(v, float) and (name != "user_known" or not np.isfinite(v)))
                row.append(0.0 if missing else 1.0)
            out = np.array([row], dtype=np.float64)
            return np.where(np.isfinite(out), out, np.nan)
        user = [as_floats(_col(users, c, m), m) for c in USER_NUMERIC]
        user += [np.array([0.0 if v is None else 1.0 for v in as_strings(_col(users, c, m), m)])
                 if c.endswith("segment") else _known_list(_col(users, c, m), m) for c in USER_KNOWN.values()]
        return np.stack(user, axis=1) if user else np.zeros((m, 0))

    @staticmethod
    def _item_raw(rows: Columns, n: int) -> np.ndarray:
        """[n, row_numeric] raw candidate numerics that depend on the item alone; NaN at the request's."""
        out = np.full((n, len(TeacherEncoder.row_numeric)), np.nan)
        for j, c in enumerate(ROW_NUMERIC):
            if j not in REQUEST_NUMERIC:
                out[:, j] = as_floats(_col(rows, c, n), n)
        for j, c in enumerate(ROW_KNOWN.values(), start=len(ROW_NUMERIC)):
            out[:, j] = np.isfinite(as_floats(_col(rows, c, n), n))
        return out

    @staticmethod
    def _request_raw(users: Columns, rows: Columns, m: int, n: int, codes: np.ndarray | None = None) -> np.ndarray:
        """[n, len(REQUEST_NUMERIC)] raw candidate numerics that depend on the request: context,
        crosses (`codes`: the candidates' `cross_codes`, else their strings are compared)."""
        cols = [as_floats(_col(rows, c, n), n) for c in ROW_NUMERIC if c.startswith(CONTEXT_PREFIX)]
        cols += [preference_weight(users, rows, bag, ROW_CATEGORICAL[row_field], m, n,
                                   None if codes is None else codes[:, j])
                 for j, (bag, row_field) in enumerate(CROSSES.values())]
        return np.stack(cols, axis=1) if cols else np.zeros((n, 0))

    def item_part(self, rows: Columns, n: int) -> dict[str, np.ndarray]:
        """The candidate inputs that depend on the item alone (attributes, statistics, merchant) for
        `n` rows; the request's positions (context, the user's crosses) hold 0 and are filled by
        `encode`. Serving computes this once per item table and takes rows from it per request."""
        row_cat = np.zeros((n, len(ROW_CATEGORICAL)), dtype=np.int64)
        for j, (k, c) in enumerate(ROW_CATEGORICAL.items()):
            if j not in REQUEST_CATEGORICAL:
                row_cat[:, j] = self.vocabularies[k].lookup(as_strings(_col(rows, c, n), n))
        raw = self._item_raw(rows, n)
        return {"row_cat": row_cat, "row_num": self.row_stats.apply(raw), "row_bucket": self.row_stats.buckets(raw),
                "cross_codes": cross_codes(rows, n, self.cross_columns)}

    def encode(self, users: Columns, rows: Columns, m: int, n: int,
               item_part: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Signature inputs. `m` is 1 (one user for all candidates) or `n` (one per row).
        `item_part`: `item_part(rows)` (or rows taken from it), when already computed."""
        if m not in (1, n):
            raise ValueError(f"user columns must have 1 row or one per candidate ({n}), not {m}")
        out: dict[str, np.ndarray] = {}
        out["user_cat"] = np.stack([self.vocabularies[k].lookup(as_strings(_col(users, c, m), m))
                                    for k, c in USER_CATEGORICAL.items()], axis=1)
        for bag, (lists, weights) in USER_BAGS.items():
            names, wts = pad_bag(_col(users, lists, m), _col(users, weights, m), m)
            out[f"{bag}_bag"] = self.vocabularies[bag].lookup(names)
            out[f"{bag}_bag_weights"] = wts.astype(np.float32)
        raw_user = self._user_raw(users, m)
        out["user_num"] = self.user_stats.apply(raw_user)
        out["user_bucket"] = self.user_stats.buckets(raw_user)
        part = self.item_part(rows, n) if item_part is None else item_part
        row_cat = np.array(part["row_cat"], dtype=np.int64).reshape(n, len(ROW_CATEGORICAL))
        row_num = np.array(part["row_num"], dtype=np.float32).reshape(n, len(self.row_numeric))
        row_bucket = np.array(part["row_bucket"], dtype=np.int64).reshape(n, len(self.row_numeric))
        names = list(ROW_CATEGORICAL.items())
        for j in REQUEST_CATEGORICAL:
            k, c = names[j]
            values = _col(rows, c, n)
            if isinstance(values, np.ndarray) and values.dtype.kind in "iu" and n and (values == values[0]).all():
                row_cat[:, j] = self.vocabularies[k].lookup(as_strings(values[:1], 1))[0]  # one request's context
            else:
                row_cat[:, j] = self.vocabularies[k].lookup(as_strings(values, n))
        request_raw = self._request_raw(users, rows, m, n, None if item_part is None or m != 1
                                        else np.asarray(part["cross_codes"]).reshape(n, len(CROSSES)))
        row_num[:, REQUEST_NUMERIC] = self.row_stats.apply(request_raw, REQUEST_NUMERIC)
        row_bucket[:, REQUEST_NUMERIC] = self.row_stats.buckets(request_raw, REQUEST_NUMERIC)
        out["row_cat"], out["row_num"], out["row_bucket"] = row_cat, row_num, row_bucket
        return out

    def encode_frame(self, frame) -> dict[str, np.ndarray]:
        return self.encode(frame, frame, len(frame), len(frame))

    def to_json(self) -> dict:
        return {"vocabularies": {k: v.values for k, v in self.vocabularies.items()},
                "user_stats": self.user_stats.to_json(), "row_stats": self.row_stats.to_json(),
                "user_numeric": self.user_numeric, "row_numeric": self.row_numeric,
                "user_categorical": USER_CATEGORICAL, "row_categorical": ROW_CATEGORICAL}

    @classmethod
    def from_json(cls, d: dict) -> TeacherEncoder:
        if d.get("user_numeric") != cls.user_numeric or d.get("row_numeric") != cls.row_numeric:
            raise ValueError("the saved encoder's feature layout differs from this code's: retrain the model")
        return cls({k: Vocabulary(v) for k, v in d["vocabularies"].items()},
                   NumericStats(**d["user_stats"]), NumericStats(**d["row_stats"]))


def preference_weight(users: Columns, rows: Columns, bag: str, row_column: str, m: int, n: int,
                      codes: np.ndarray | None = None) -> np.ndarray:
    """The user's preference weight of each candidate's value (e.g. its category in the user's
    top categories), 0 when absent. `m` user rows: 1 (broadcast) or n. `codes`: the candidates'
    `value_codes` of `row_column` (precomputed per item table), compared instead of its strings
    (one user only)."""
    lists, weights = USER_BAGS[bag]
    if codes is not None:
        if m != 1:
            raise ValueError("preference codes are for one user's request (m == 1)")
        out = np.zeros(n, dtype=np.float64)
        for code, w in preference_codes(bag_entries(first_value(_col(users, lists, 1)),
                                                    first_value(_col(users, weights, 1)))).items():
            out[codes == np.uint64(code)] = w
        return out
    names, wts = pad_bag(_col(users, lists, m), _col(users, weights, m), m)
    values = as_strings(_col(rows, row_column, n), n)
    if m == 1 and n > 1:  # one request: the user's few preferences, each compared with every candidate
        out = np.zeros(n, dtype=np.float64)
        for name, w in zip(names[0], wts[0], strict=True):
            if name is not None:
                out += (values == name) * float(w)
        return out
    hit = (names == values[:, None]) & (values[:, None] != None)  # noqa: E711 (elementwise)
    return (hit * wts).sum(axis=1)


def preference_codes(entries: list[tuple[str | None, float]]) -> dict[int, float]:
    """A user's bag entries as {value code: weight}, a repeated value's weights summed in bag
    order (as `preference_weight` adds them up per candidate)."""
    out: dict[int, float] = {}
    for name, w in entries:
        if name is not None:
            code = value_code(name)
            out[code] = out.get(code, 0.0) + w
    return out


def cross_codes(rows: Columns, n: int, columns: list[str]) -> np.ndarray:
    """[n, len(columns)] `value_codes` of the candidates' crossed columns (category, brand)."""
    out = np.zeros((n, len(columns)), dtype=np.uint64)
    for j, c in enumerate(columns):
        out[:, j] = value_codes(as_strings(_col(rows, c, n), n))
    return out


def first_value(values: Any) -> Any:
    """The one value of a length-1 column (list, array), a scalar as it is; NaN-free None."""
    if values is None or isinstance(values, str) or not hasattr(values, "__len__"):
        return values
    return values[0] if len(values) else None


def _known_list(values: Any, n: int) -> np.ndarray:
    if values is None:
        return np.zeros(n)
    values = list(values)
    if len(values) == 1 and n != 1:
        values = values * n
    return np.array([0.0 if v is None or isinstance(v, float) else 1.0 for v in values])
