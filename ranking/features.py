"""Ranking features: how a frame of training rows — or one request's user, candidates and
context — becomes the arrays the MMoE teacher takes, for the columns its layout names
(`ranking/layout.py`, derived from the model's feature service). Shared by training and
serving, so both encode identically.

Values are put in one of three forms:
- categorical: a string (numbers as their integer text), looked up in a vocabulary fitted on
  the training rows; index 0 is "unknown or missing" (new users, new brands);
- numeric: signed log1p, then standardised with training statistics, clipped to ±5;
  missing or non-finite values become 0 (the training mean), with a known/unknown flag per
  feature view that names one, so "no history" is visible to the model;
- bags: the user's top values (categories, brands) with their preference weights (padded to 3).
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
from ranking.layout import Bag, Layout
from vitrine.featurestore.contract import ContractError

# the context's price_vs_user divides the candidate's price by the user's price level (the
# on-demand view's sources, feature_repo/context_views.py)
PRICE = "item_attributes__price"
PRICE_LEVEL = "user_behaviour__price_level"
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
                           as_floats(prices, n) if n else np.zeros(0), user.get(PRICE_LEVEL))
    users = {k: [v] for k, v in user.items()}
    return users, {**items, **ctx}, n


def request_context_one(user: Columns, items: Columns, request: Columns, n: int) -> dict[str, Any]:
    """One request's context columns for `n` candidates given as an item part: one value for
    those that are the same for every candidate (hour, weekday, device), an array [n] for the
    price relative to the user's level — `request_rows`' context without n copies of each."""
    _candidate_count(items, request, n)
    ctx: dict[str, Any] = request_context(request["request_unix_s"], request.get("device_code"))
    ctx[PRICE_VS_USER] = price_vs_user(as_floats(items.get(PRICE), n) if n else np.zeros(0),
                                       user.get(PRICE_LEVEL))
    return ctx


def _col(cols: Columns, name: str, n: int) -> Any:
    value = cols.get(name)
    if value is None:
        return None
    if hasattr(value, "to_numpy"):
        return value.to_numpy()
    return value


class TeacherEncoder:
    """Vocabularies and numeric statistics for the MMoE teacher over its `layout`, fitted on
    training rows and saved as JSON (with the layout) next to the SavedModel. `encode(users,
    rows)` gives the signature inputs: user arrays of length m (1 at serving, one per row in
    training), candidate arrays of length n."""

    def __init__(self, layout: Layout, vocabularies: dict[str, Vocabulary], user_stats: NumericStats,
                 row_stats: NumericStats):
        self.layout = layout
        self.vocabularies = vocabularies
        self.user_stats = user_stats
        self.row_stats = row_stats
        self.user_numeric = layout.user_inputs
        self.row_numeric = layout.row_inputs
        # the candidates' crossed columns (category, brand), as codes in the item part
        self.cross_columns = [b.row_column for b in layout.bags.values()]
        self._numeric_known = {f.column for f in layout.fields if f.dtype in ("int", "float", "bool")}

    # the candidates' item columns `encode` still reads when given an `item_part` (the crosses'
    # values come as codes in the item part)
    request_columns: ClassVar[list[str]] = [PRICE]

    def vocabulary_sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.vocabularies.items()}

    @property
    def segments(self) -> list[str]:
        """The user segments' vocabulary (per-segment metrics), [] when the layout has none."""
        vocab = self.vocabularies.get("segment")
        return vocab.values if vocab is not None and "segment" in self.layout.user_categorical else []

    @classmethod
    def fit(cls, frame, layout: Layout) -> TeacherEncoder:
        missing = [c for c in layout.columns if c not in frame]
        if missing:
            raise ContractError(f"training rows lack {len(missing)} column(s) of service {layout.service}: "
                                f"{', '.join(missing[:5])} (rebuild the training set: --rebuild)")
        n = len(frame)
        vocab: dict[str, Vocabulary] = {}
        for name, column in {**layout.user_categorical, **layout.row_categorical}.items():
            extra = []
            bag = layout.bags.get(name)
            if bag is not None:  # the bag's values share the candidate field's vocabulary
                extra = [pad_bag(_col(frame, bag.lists, n), _col(frame, bag.weights, n), n)[0]]
            vocab[name] = fit_vocabulary(as_strings(_col(frame, column, n), n), *extra, min_count=2)
        enc = cls(layout, vocab, NumericStats([], []), NumericStats([], []))
        raw_user, raw_rows = enc._raw_numeric(frame, frame, n, n)
        enc.user_stats, enc.row_stats = NumericStats.fit(raw_user), NumericStats.fit(raw_rows)
        return enc

    def _raw_numeric(self, users: Columns, rows: Columns, m: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        raw_rows = self._item_raw(rows, n)
        raw_rows[:, self.layout.request_numeric] = self._request_raw(users, rows, m, n)
        return self._user_raw(users, m), raw_rows

    def _known(self, values: Any, column: str, n: int) -> np.ndarray:
        """1.0 where the view has a value in `column` (finite for numbers, not None for the rest)."""
        if column in self._numeric_known:
            return np.isfinite(as_floats(values, n)).astype(np.float64)
        return _known_list(values, n)

    def _user_raw(self, users: Columns, m: int) -> np.ndarray:
        lay = self.layout
        if m == 1:  # one request's user: the values one by one (as as_floats / the known flags do)
            row = [to_float(first_value(_col(users, c, 1))) for c in lay.user_numeric]
            for c in lay.user_known.values():
                v = first_value(_col(users, c, 1))
                if c in self._numeric_known:
                    row.append(1.0 if np.isfinite(to_float(v)) else 0.0)
                else:
                    row.append(0.0 if v is None or isinstance(v, float) else 1.0)
            out = np.array([row], dtype=np.float64)
            return np.where(np.isfinite(out), out, np.nan)
        user = [as_floats(_col(users, c, m), m) for c in lay.user_numeric]
        user += [self._known(_col(users, c, m), c, m) for c in lay.user_known.values()]
        return np.stack(user, axis=1) if user else np.zeros((m, 0))

    def _item_raw(self, rows: Columns, n: int) -> np.ndarray:
        """[n, row_numeric] raw candidate numerics that depend on the item alone; NaN at the request's."""
        lay = self.layout
        out = np.full((n, len(self.row_numeric)), np.nan)
        request = set(lay.request_numeric)
        for j, c in enumerate(lay.row_numeric):
            if j not in request:
                out[:, j] = as_floats(_col(rows, c, n), n)
        for j, c in enumerate(lay.row_known.values(), start=len(lay.row_numeric)):
            out[:, j] = self._known(_col(rows, c, n), c, n)
        return out

    def _request_raw(self, users: Columns, rows: Columns, m: int, n: int, codes: np.ndarray | None = None
                     ) -> np.ndarray:
        """[n, len(request_numeric)] raw candidate numerics that depend on the request: context,
        crosses (`codes`: the candidates' `cross_codes`, else their strings are compared)."""
        lay = self.layout
        cols = [as_floats(_col(rows, c, n), n) for c in lay.row_numeric if c.startswith(CONTEXT_PREFIX)]
        cols += [preference_weight(users, rows, lay.bags[bag], m, n, None if codes is None else codes[:, j])
                 for j, bag in enumerate(lay.crosses.values())]
        return np.stack(cols, axis=1) if cols else np.zeros((n, 0))

    def item_part(self, rows: Columns, n: int) -> dict[str, np.ndarray]:
        """The candidate inputs that depend on the item alone (attributes, statistics, merchant) for
        `n` rows; the request's positions (context, the user's crosses) hold 0 and are filled by
        `encode`. Serving computes this once per item table and takes rows from it per request."""
        lay = self.layout
        row_cat = np.zeros((n, len(lay.row_categorical)), dtype=np.int64)
        for j, (k, c) in enumerate(lay.row_categorical.items()):
            if j not in lay.request_categorical:
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
        lay = self.layout
        out: dict[str, np.ndarray] = {}
        out["user_cat"] = np.stack([self.vocabularies[k].lookup(as_strings(_col(users, c, m), m))
                                    for k, c in lay.user_categorical.items()], axis=1) \
            if lay.user_categorical else np.zeros((m, 0), dtype=np.int64)
        for name, bag in lay.bags.items():
            names, wts = pad_bag(_col(users, bag.lists, m), _col(users, bag.weights, m), m)
            out[f"{name}_bag"] = self.vocabularies[name].lookup(names)
            out[f"{name}_bag_weights"] = wts.astype(np.float32)
        raw_user = self._user_raw(users, m)
        out["user_num"] = self.user_stats.apply(raw_user)
        out["user_bucket"] = self.user_stats.buckets(raw_user)
        part = self.item_part(rows, n) if item_part is None else item_part
        row_cat = np.array(part["row_cat"], dtype=np.int64).reshape(n, len(lay.row_categorical))
        row_num = np.array(part["row_num"], dtype=np.float32).reshape(n, len(self.row_numeric))
        row_bucket = np.array(part["row_bucket"], dtype=np.int64).reshape(n, len(self.row_numeric))
        names = list(lay.row_categorical.items())
        for j in lay.request_categorical:
            k, c = names[j]
            values = _col(rows, c, n)
            if isinstance(values, np.ndarray) and values.dtype.kind in "iu" and n and (values == values[0]).all():
                row_cat[:, j] = self.vocabularies[k].lookup(as_strings(values[:1], 1))[0]  # one request's context
            else:
                row_cat[:, j] = self.vocabularies[k].lookup(as_strings(values, n))
        request_raw = self._request_raw(users, rows, m, n, None if item_part is None or m != 1
                                        else np.asarray(part["cross_codes"]).reshape(n, len(lay.crosses)))
        row_num[:, lay.request_numeric] = self.row_stats.apply(request_raw, lay.request_numeric)
        row_bucket[:, lay.request_numeric] = self.row_stats.buckets(request_raw, lay.request_numeric)
        out["row_cat"], out["row_num"], out["row_bucket"] = row_cat, row_num, row_bucket
        return out

    def encode_frame(self, frame) -> dict[str, np.ndarray]:
        return self.encode(frame, frame, len(frame), len(frame))

    def to_json(self) -> dict:
        return {"layout": self.layout.to_json(),
                "vocabularies": {k: v.values for k, v in self.vocabularies.items()},
                "user_stats": self.user_stats.to_json(), "row_stats": self.row_stats.to_json(),
                "user_numeric": self.user_numeric, "row_numeric": self.row_numeric}

    @classmethod
    def from_json(cls, d: dict) -> TeacherEncoder:
        if "layout" not in d:
            raise ValueError("the saved encoder predates feature-service layouts: retrain the model")
        layout = Layout.from_json(d["layout"])
        if d.get("user_numeric") != layout.user_inputs or d.get("row_numeric") != layout.row_inputs:
            raise ValueError("the saved encoder's numeric inputs differ from its layout's: retrain the model")
        return cls(layout, {k: Vocabulary(v) for k, v in d["vocabularies"].items()},
                   NumericStats(**d["user_stats"]), NumericStats(**d["row_stats"]))


def preference_weight(users: Columns, rows: Columns, bag: Bag, m: int, n: int,
                      codes: np.ndarray | None = None) -> np.ndarray:
    """The user's preference weight of each candidate's value (e.g. its category in the user's
    top categories), 0 when absent. `m` user rows: 1 (broadcast) or n. `codes`: the candidates'
    `value_codes` of the bag's candidate column (precomputed per item table), compared instead
    of its strings (one user only)."""
    if codes is not None:
        if m != 1:
            raise ValueError("preference codes are for one user's request (m == 1)")
        out = np.zeros(n, dtype=np.float64)
        for code, w in preference_codes(bag_entries(first_value(_col(users, bag.lists, 1)),
                                                    first_value(_col(users, bag.weights, 1)))).items():
            out[codes == np.uint64(code)] = w
        return out
    names, wts = pad_bag(_col(users, bag.lists, m), _col(users, bag.weights, m), m)
    values = as_strings(_col(rows, bag.row_column, n), n)
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
