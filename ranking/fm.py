"""The FM student as serving sees it: plain arrays (bias, linear weights, factors) and a
feature map, scored in NumPy — no TensorFlow, no pickle.

Every input is a one-hot *field*: a categorical column looked up in its vocabulary, or a
numeric column bucketed at training-time quantiles (signed log1p first). Index 0 of each
field is "unknown / missing". With `idx[n, F]` the global feature index of each candidate's
F fields, the score (a logit) is

    bias + Σ_f w[idx_f] + ½ Σ_k ((Σ_f V[idx_f, k])² − Σ_f V[idx_f, k]²)

i.e. the usual factorisation machine with x_i ∈ {0, 1}.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ranking.context import PREFIX as CONTEXT_PREFIX
from ranking.features import (
    PRICE,
    Columns,
    as_floats,
    as_strings,
    bag_entries,
    cross_codes,
    first_value,
    fit_vocabulary,
    preference_codes,
    preference_weight,
    request_context_one,
    request_rows,
    to_float,
)
from ranking.layout import Bag, Layout
from vitrine.versions import BadModelVersion, verify

FEATURE_MAP = "feature_map.json"
FORMAT = 3  # 3: crosses name their bag's columns (2: bags by name; 1: bucket edges on signed log1p)
ARRAYS = ("bias", "linear", "factors")


@dataclass
class Field:
    """One one-hot field: `kind` is "categorical" (a vocabulary), "bucket" (quantile edges of a
    numeric column) or "cross" (quantile edges of the user's preference weight of the
    candidate's `column` value, from the user's `bag`: [values column, weights column]; `side`
    names the bag); for the others `side` is "user" (the user's columns), "request" (the
    candidates' context columns, the same for all candidates of one request) or "row" (per
    candidate)."""

    name: str
    column: str
    kind: str
    side: str
    offset: int = 0
    vocabulary: list[str] | None = None
    edges: list[float] | None = None
    bag: list[str] | None = None

    @property
    def bag_columns(self) -> Bag:
        if not self.bag:
            raise ValueError(f"field {self.name} is not a cross")
        return Bag(self.side, self.bag[0], self.bag[1], self.column)

    def __post_init__(self) -> None:
        self._index = {v: i + 1 for i, v in enumerate(self.vocabulary or [])}
        self._edges = np.asarray(self.edges or [], dtype=np.float64)
        self._edge_list = [float(e) for e in self.edges or []]

    def encode_one(self, value: Any) -> int:
        """`encode` of a single value (a request's user and context fields), without arrays."""
        if self.kind == "categorical":
            return self._index.get(_one_string(value), 0)
        x = to_float(value)
        if not math.isfinite(x):
            return 0
        return bisect.bisect_right(self._edge_list, x) + 1

    def encode_cross(self, entries: list[tuple[str | None, float]], codes: np.ndarray, n: int) -> np.ndarray:
        """A "cross" field's local index for `n` candidates from the user's bag `entries` and the
        candidates' `value_codes` of `column`: what `encode` gives for `preference_weight`'s
        weights (duplicates summed in bag order, as there), without a weight per candidate."""
        out = np.full(n, self.encode_one(0.0), dtype=np.int64)
        for code, w in preference_codes(entries).items():
            out[codes == np.uint64(code)] = self.encode_one(w)
        return out

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in ("name", "column", "kind", "side", "offset", "vocabulary", "edges", "bag")}

    @property
    def size(self) -> int:
        return (len(self.vocabulary or []) + 1) if self.kind == "categorical" else len(self.edges or []) + 2

    def encode(self, values: Any, n: int) -> np.ndarray:
        """Local index in [0, size) for `n` values (0: unknown / missing)."""
        if self.kind == "cross":
            x = np.asarray(values, dtype=np.float64)
            return (np.searchsorted(self._edges, x, side="right") + 1).astype(np.int64)
        if self.kind == "categorical":
            get = self._index.get
            return np.fromiter((get(s, 0) for s in as_strings(values, n)), dtype=np.int64, count=n)
        if isinstance(values, np.ndarray) and values.dtype == np.float64 and values.shape == (n,):
            x = values  # the common case, already floats: no copy
        else:
            x = as_floats(values, n)
        out = np.searchsorted(self._edges, x, side="right") + 1
        out[~np.isfinite(x)] = 0
        return out


class FeatureMap:
    """Fields with their offsets into one global index space (JSON-serialisable)."""

    def __init__(self, fields: list[Field]):
        offset = 0
        for f in fields:
            f.offset = offset
            offset += f.size
        self.fields = fields
        self.size = offset
        self._request_positions = [j for j, f in enumerate(fields) if not self._item_field(f)]
        # per request: fields with one value for all its candidates (the user's, the request's) and
        # the candidates' fields that depend on the request (context per candidate, crosses)
        self._constant = [(j, f) for j, f in enumerate(fields) if f.side in ("user", "request")]
        self._varying = [(j, f) for j, f in enumerate(fields)
                         if f.side not in ("user", "request") and not self._item_field(f)]
        self.cross_columns = [f.column for _, f in self._varying if f.kind == "cross"]
        # the user's columns a request reads (its fields', the crossed bags')
        self.user_columns = sorted({f.column for _, f in self._constant if f.side == "user"}
                                   | {c for _, f in self._varying if f.kind == "cross" for c in f.bag or ()})

    @staticmethod
    def spec_of(layout: Layout) -> dict[str, tuple]:
        """The student's fields for a feature service's layout, in the service's order: field
        name → (column, kind, side[, bag columns]). Categorical fields are one-hot ("request"
        side for the context's), numeric ones bucketed; a candidate field a user bag matches
        enters as the user's preference weight of its value (a cross, after the other fields),
        not as a field of its own — that keeps the student small. Known flags are not fields:
        a missing value has its own bucket."""
        matched = {b.row_column for b in layout.bags.values()}
        categorical = {*layout.user_categorical.values(), *layout.row_categorical.values()}
        spec: dict[str, tuple] = {}
        for f in layout.fields:
            column = f.column
            if column in matched or column in layout.ignored:
                continue
            side = "user" if f.entity == "user" else "row"
            if column in categorical:
                spec[column] = (column, "categorical", "request" if column.startswith(CONTEXT_PREFIX) else side)
            elif column in layout.user_numeric or column in layout.row_numeric:
                spec[column] = (column, "bucket", side)
        for cross, bag in layout.crosses.items():
            b = layout.bags[bag]
            spec[cross] = (b.row_column, "cross", bag, [b.lists, b.weights])
        return spec

    @classmethod
    def fit(cls, frame, spec: Mapping[str, tuple], buckets: int = 10, min_count: int = 2) -> FeatureMap:
        """`spec`: field name → (column, kind, side[, bag columns]) (`spec_of`), fitted on the
        training `frame`."""
        fields = []
        n = len(frame)
        for name, (column, kind, side, *bag) in spec.items():
            values = frame[column].to_numpy() if column in frame else None
            if kind == "cross":
                lists, weights = bag[0]
                x = preference_weight(frame, frame, Bag(side, lists, weights, column), n, n)
                qs = np.quantile(x, np.linspace(0, 1, buckets + 1)[1:-1]) if n else np.zeros(0)
                fields.append(Field(name, column, kind, side, edges=[float(v) for v in np.unique(qs)],
                                    bag=[lists, weights]))
            elif kind == "categorical":
                fields.append(Field(name, column, kind, side,
                                    vocabulary=fit_vocabulary(as_strings(values, n), min_count=min_count).values))
            else:
                x = as_floats(values, n)
                x = x[~np.isnan(x)]
                qs = np.quantile(x, np.linspace(0, 1, buckets + 1)[1:-1]) if len(x) else np.zeros(0)
                fields.append(Field(name, column, "bucket", side, edges=[float(v) for v in np.unique(qs)]))
        return cls(fields)

    def _item_field(self, f: Field) -> bool:
        """A field that depends on the item alone: computable once per item table."""
        return f.side == "row" and f.kind != "cross" and not f.column.startswith(CONTEXT_PREFIX)

    def item_part(self, rows: Columns, n: int) -> np.ndarray:
        """Global indices [n, F] of the item-only fields (attributes, statistics, merchant); the
        other positions hold 0 and are filled by `encode`."""
        out = np.zeros((n, len(self.fields)), dtype=np.int64)
        for j, f in enumerate(self.fields):
            if self._item_field(f):
                value = rows.get(f.column)
                out[:, j] = f.offset + f.encode(value.to_numpy() if hasattr(value, "to_numpy") else value, n)
        return out

    def encode(self, users: Columns, rows: Columns, n: int, m: int = 1,
               item_part: np.ndarray | None = None) -> np.ndarray:
        """Global indices [n, F]. User-side columns have `m` rows: 1 (broadcast) or n.
        `item_part`: `item_part(rows)` (or rows taken from it), when already computed."""
        if item_part is None:
            out = self.item_part(rows, n)
        else:
            out = np.array(item_part, dtype=np.int64).reshape(n, len(self.fields))
        self.encode_request(out, users, rows, n, m)
        return out

    def encode_request(self, out: np.ndarray, users: Columns, rows: Columns, n: int, m: int = 1) -> None:
        """Fill `out[n, F]`'s positions of the fields that are not item-only (user, context, crosses)."""
        if m == 1:
            for (j, _), index in zip(self._constant, self.encode_constant(users, rows), strict=True):
                out[:, j] = index
            for (j, _), index in zip(self._varying, self.encode_varying(users, rows, n), strict=True):
                out[:, j] = index
            return
        for j in self._request_positions:
            f = self.fields[j]
            if f.kind == "cross":
                out[:, j] = f.offset + f.encode(preference_weight(users, rows, f.bag_columns, m, n), n)
                continue
            source, k = (users, m) if f.side == "user" else (rows, m if f.side == "request" else n)
            value = source.get(f.column)
            if hasattr(value, "to_numpy"):
                value = value.to_numpy()
            if k == 1:  # one request: its user and context values are encoded once, broadcast
                if value is not None and not isinstance(value, str) and np.ndim(value) == 1:
                    value = value[0] if len(value) else None
                out[:, j] = f.offset + f.encode_one(value)
                continue
            out[:, j] = f.offset + f.encode(value, k)

    def encode_constant(self, users: Columns, rows: Columns) -> list[int]:
        """Global indices of one request's user and request fields (one value each, for every candidate)."""
        out = []
        for _, f in self._constant:
            value = (users if f.side == "user" else rows).get(f.column)
            if hasattr(value, "to_numpy"):
                value = value.to_numpy()
            if value is not None and not isinstance(value, str) and np.ndim(value) == 1:
                value = value[0] if len(value) else None
            out.append(f.offset + f.encode_one(value))
        return out

    def encode_varying(self, users: Columns, rows: Columns, n: int,
                       codes: np.ndarray | None = None) -> list[np.ndarray]:
        """Global indices [n] of one request's candidate fields that depend on the request (per
        candidate context, the user's crosses). `codes`: the candidates' `cross_codes` of
        `cross_columns`, compared instead of their strings."""
        out, c = [], 0
        for _, f in self._varying:
            if f.kind == "cross" and codes is not None:
                bag = f.bag_columns
                entries = bag_entries(first_value(users.get(bag.lists)), first_value(users.get(bag.weights)))
                out.append(f.offset + f.encode_cross(entries, codes[:, c], n))
                c += 1
                continue
            if f.kind == "cross":
                x = preference_weight(users, rows, f.bag_columns, 1, n)
            else:
                x = rows.get(f.column)
                x = x.to_numpy() if hasattr(x, "to_numpy") else x
            out.append(f.offset + f.encode(x, n))
        return out

    @property
    def item_fields(self) -> np.ndarray:
        """Positions of the item-only fields."""
        return np.array([j for j, f in enumerate(self.fields) if self._item_field(f)], dtype=np.int64)

    @property
    def request_columns(self) -> list[str]:
        """The candidates' item columns a request still reads when given an `item_part` (whose
        `cross_codes` stand for the crosses' columns)."""
        cols = {f.column for _, f in self._varying if f.kind != "cross"}
        cols.add(PRICE)  # the context's price_vs_user
        return sorted(c for c in cols if not c.startswith(CONTEXT_PREFIX))

    @property
    def user_fields(self) -> np.ndarray:
        """Positions of the user and request fields (constant over a request's candidates)."""
        return np.array([j for j, f in enumerate(self.fields) if f.side in ("user", "request")], dtype=np.int64)

    def to_json(self) -> dict:
        return {"format": FORMAT, "fields": [f.to_json() for f in self.fields], "size": self.size}

    @classmethod
    def from_json(cls, d: dict) -> FeatureMap:
        if d.get("format") != FORMAT:
            raise ValueError(f"feature map format {d.get('format')!r}, this code reads {FORMAT}: retrain the student")
        fm = cls([Field(**{k: v for k, v in f.items() if k != "offset"}) for f in d["fields"]])
        if fm.size != d["size"] or [f.offset for f in fm.fields] != [f["offset"] for f in d["fields"]]:
            raise ValueError("feature map offsets do not add up")
        return fm


def _one_string(v: Any) -> str | None:
    """One value as `as_strings` writes it: None for missing, integral numbers as integers."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(v):
            return None
        return str(int(v)) if float(v).is_integer() else str(v)
    return str(v)


def fm_logits(bias: float, linear: np.ndarray, factors: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """FM logits for one-hot global indices `idx[n, F]` (float32 [n])."""
    v = factors[idx]                                   # [n, F, k]
    s = v.sum(axis=1)                                  # [n, k]
    pair = 0.5 * (s * s - (v * v).sum(axis=1)).sum(axis=1)
    return (bias + linear[idx].sum(axis=1) + pair).astype(np.float32)


def fm_logits_one_user(bias: float, linear: np.ndarray, factors: np.ndarray, user_idx: np.ndarray,
                       row_idx: np.ndarray, adjusted: np.ndarray | None = None) -> np.ndarray:
    """The same logits when the fields `user_idx[Fu]` are shared by all candidates.

    With one-hot inputs Σ_k Σ_f v_fk² = Σ_f |v_f|², so the pairwise term is ½|Σ_f v_f|² −
    ½Σ_f |v_f|²; folding −½|v_i|² into each linear weight (`adjusted`, precomputable) leaves one
    gather of factors and one of scalars per candidate, the user's part summed once."""
    if adjusted is None:
        adjusted = linear - 0.5 * np.einsum("ij,ij->i", factors, factors)
    s = np.tile(factors[user_idx].sum(axis=0), (len(row_idx), 1))  # [n, k], the user's part
    for j in range(row_idx.shape[1]):  # field by field: 2x faster than summing an [n, F, k] gather
        s += factors[row_idx[:, j]]
    return (bias + adjusted[user_idx].sum() + adjusted[row_idx].sum(axis=1)
            + 0.5 * np.einsum("nk,nk->n", s, s)).astype(np.float32)


@dataclass
class FMStudent:
    """A loaded FM student version. `score(user, items, request)` → float32 [n], higher is
    better (the CTR logit); inputs as for the server: Feast full feature names, missing keys
    and None/NaN meaning unknown."""

    directory: Path
    manifest: dict
    feature_map: FeatureMap
    bias: float
    linear: np.ndarray
    factors: np.ndarray

    def __post_init__(self) -> None:
        shared = self.feature_map.user_fields
        self._user_fields = shared
        self._row_fields = np.setdiff1d(np.arange(len(self.feature_map.fields)), shared)
        self._item_fields = self.feature_map.item_fields
        self._adjusted = (self.linear - 0.5 * np.einsum("ij,ij->i", self.factors, self.factors)).astype(np.float32)

    @property
    def version(self) -> str:
        return self.directory.name

    @property
    def feature_service(self) -> str:
        return self.manifest["feature_service"]

    @classmethod
    def load(cls, directory: Path) -> FMStudent:
        """Verify the manifest (raises `BadModelVersion`), then read the arrays (no pickle)."""
        directory = Path(directory)
        manifest = verify(directory)
        if manifest.get("model") != "coarse":
            raise BadModelVersion(f"{directory} holds a {manifest.get('model')!r} model, not the coarse FM student")
        try:
            arrays = {a: np.load(directory / f"{a}.npy", allow_pickle=False) for a in ARRAYS}
            fmap = FeatureMap.from_json(json.loads((directory / FEATURE_MAP).read_text()))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise BadModelVersion(f"{directory}: unreadable FM student: {e}") from e
        linear, factors = arrays["linear"].astype(np.float32), arrays["factors"].astype(np.float32)
        if linear.shape != (fmap.size,) or factors.ndim != 2 or factors.shape[0] != fmap.size:
            raise BadModelVersion(f"{directory}: arrays {linear.shape}/{factors.shape} do not match "
                                  f"the feature map's {fmap.size} features")
        return cls(directory, manifest, fmap, float(arrays["bias"].reshape(-1)[0]), linear, factors)

    def score(self, user: Columns, items: Columns, request: Columns,
              item_part: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """`item_part`: the candidates' rows of `item_part` (then `items` needs only the columns of
        `request_columns`)."""
        if item_part is None:
            users, rows, n = request_rows(user, items, request)
            if n == 0:
                return np.zeros(0, dtype=np.float32)
            idx = self.feature_map.encode(users, rows, n)
            return fm_logits_one_user(self.bias, self.linear, self.factors, idx[0, self._user_fields],
                                      idx[:, self._row_fields], self._adjusted)
        # the item-only fields arrive summed (their factor vectors, their linear weights); add the
        # request's constant fields once and its per-candidate ones (context, crosses) field by field
        fm = self.feature_map
        n = len(item_part["linear_sum"])
        rows = request_context_one(user, items, request, n)
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        users = {c: [user.get(c)] for c in fm.user_columns}
        const = fm.encode_constant(users, rows)
        s = item_part["factor_sum"] + self.factors[const].sum(axis=0)
        linear = item_part["linear_sum"] + self._adjusted[const].sum()
        for index in fm.encode_varying(users, rows, n, item_part["cross_codes"]):
            s += self.factors[index]
            linear += self._adjusted[index]
        return (self.bias + linear + 0.5 * np.einsum("nk,nk->n", s, s)).astype(np.float32)

    @property
    def request_columns(self) -> list[str]:
        return self.feature_map.request_columns

    def item_part(self, items: Columns, n: int) -> dict[str, np.ndarray]:
        """For a table of `n` items, what the item-only fields add to each candidate's FM score:
        the sum of their factor vectors [n, k] and of their linear weights (with −½|v|² folded
        in, as `fm_logits_one_user`) [n] — `score`'s `item_part`. The FM's pairwise term only
        needs Σ_f v_f, so a request adds its user, context and cross fields to these sums."""
        idx = self.feature_map.item_part(items, n)[:, self._item_fields]
        factor_sum = np.zeros((n, self.factors.shape[1]), dtype=np.float32)
        for j in range(idx.shape[1]):
            factor_sum += self.factors[idx[:, j]]
        linear_sum = self._adjusted[idx].sum(axis=1, dtype=np.float32) if idx.shape[1] else np.zeros(n, np.float32)
        return {"factor_sum": factor_sum, "linear_sum": linear_sum,
                "cross_codes": cross_codes(items, n, self.feature_map.cross_columns)}

    def score_frame(self, frame) -> np.ndarray:
        """Logits for training-set rows (one user per row)."""
        idx = self.feature_map.encode(frame, frame, len(frame), len(frame))
        return fm_logits(self.bias, self.linear, self.factors, idx)


def save_arrays(directory: Path, feature_map: FeatureMap, bias: float, linear: np.ndarray,
                factors: np.ndarray) -> None:
    np.save(directory / "bias.npy", np.asarray([bias], dtype=np.float32), allow_pickle=False)
    np.save(directory / "linear.npy", np.asarray(linear, dtype=np.float32), allow_pickle=False)
    np.save(directory / "factors.npy", np.asarray(factors, dtype=np.float32), allow_pickle=False)
    (directory / FEATURE_MAP).write_text(json.dumps(feature_map.to_json()))
