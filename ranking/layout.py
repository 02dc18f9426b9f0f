"""The rankers' input layout, derived from their feature service's fields
(`vitrine/featurestore/contract.py`): which Feast column feeds which input, on which side.

The MMoE teacher's inputs, in the service's order:
- user side (one row per user, broadcast over the candidates): categorical fields, numeric
  fields, bags (the user's top values with weights, sharing the vocabulary of the candidate
  field they `match`), and a known flag per user view that names one (`known_flag` tag);
- candidate side (one row per candidate): item and merchant categorical and numeric fields,
  their known flags, the request's context (the on-demand view, computed per request by
  `ranking/context.py`), and one cross per bag: the user's weight of the candidate's value.

The layout is saved with each model (its service's fields as JSON) and rebuilt from there at
serving, so a model keeps reading what it was trained on whatever the registry says later.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ranking.context import FEATURES as CONTEXT_FEATURES
from ranking.context import PREFIX as CONTEXT_PREFIX
from vitrine.featurestore.contract import ContractError, ServiceField


@dataclass(frozen=True)
class Bag:
    """A user's weighted values (`lists`, `weights` columns), in the vocabulary of the
    candidate field `matches` (a categorical's name), whose column is `row_column`."""

    name: str
    lists: str
    weights: str
    row_column: str


class Layout:
    """The inputs of one service (see the module docstring); attributes are column lists and
    name → column maps, in the service's order."""

    def __init__(self, service: str, fields: Iterable[ServiceField]) -> None:
        self.service = service
        self.fields = list(fields)
        self.user_categorical: dict[str, str] = {}
        self.user_numeric: list[str] = []
        self.user_known: dict[str, str] = {}
        self.row_categorical: dict[str, str] = {}
        self.row_numeric: list[str] = []
        self.row_known: dict[str, str] = {}
        self.ignored: dict[str, str] = {}  # column → why it is not an input
        by_column = {f.column: f for f in self.fields}
        names = [f.feature for f in self.fields if f.encoding == "categorical"]
        bags: list[ServiceField] = []
        for f in self.fields:
            user = f.entity == "user"
            if f.entity is None and f.feature not in CONTEXT_FEATURES:
                raise ContractError(f"{f.column}: on-demand features are computed per request by "
                                    f"ranking/context.py, which knows only {', '.join(CONTEXT_FEATURES)}")
            encoding = f.encoding
            if encoding == "categorical":
                name = f.feature if names.count(f.feature) == 1 else f.column
                (self.user_categorical if user else self.row_categorical)[name] = f.column
            elif encoding == "numeric":
                (self.user_numeric if user else self.row_numeric).append(f.column)
            elif encoding == "bag":
                if not user:
                    raise ContractError(f"{f.column}: bags are user fields")
                bags.append(f)
            else:
                self.ignored[f.column] = f"encoding {encoding} ({f.dtype})"
            if f.known_flag:
                (self.user_known if user else self.row_known)[f"{f.view}_known"] = f.column
        self.bags: dict[str, Bag] = {}
        for f in bags:
            weights, matches = f"{f.view}__{f.tags['weights']}", f.tags["matches"]
            if weights not in by_column:
                raise ContractError(f"{f.column}: its weights {weights} must be in service {service} too")
            if matches not in self.row_categorical:
                raise ContractError(f"{f.column}: it matches candidate field {matches!r}, which service {service} "
                                    f"does not list as a categorical item field")
            self.ignored.pop(weights, None)
            self.bags[matches] = Bag(matches, f.column, weights, self.row_categorical[matches])
        # the user's weight of each candidate's bag value
        self.crosses = {f"{b}_pref": b for b in self.bags}
        cat = list(self.row_categorical.values())
        self.request_categorical = [j for j, c in enumerate(cat) if c.startswith(CONTEXT_PREFIX)]
        n_row = len(self.row_numeric) + len(self.row_known)
        self.request_numeric = [*(j for j, c in enumerate(self.row_numeric) if c.startswith(CONTEXT_PREFIX)),
                                *range(n_row, n_row + len(self.crosses))]

    # the numeric inputs as the model sees them: values, known flags, (candidate side) crosses
    @property
    def user_inputs(self) -> list[str]:
        return [*self.user_numeric, *self.user_known]

    @property
    def row_inputs(self) -> list[str]:
        return [*self.row_numeric, *self.row_known, *self.crosses]

    @property
    def columns(self) -> list[str]:
        """Every column the layout reads."""
        out = [*self.user_categorical.values(), *self.user_numeric, *self.user_known.values(),
               *self.row_categorical.values(), *self.row_numeric, *self.row_known.values()]
        for b in self.bags.values():
            out += [b.lists, b.weights]
        return list(dict.fromkeys(out))

    def to_json(self) -> dict:
        return {"service": self.service, "fields": [f.to_json() for f in self.fields]}

    @classmethod
    def from_json(cls, d: dict) -> Layout:
        return cls(d["service"], [ServiceField.from_json(f) for f in d["fields"]])

    def describe(self) -> str:
        return (f"{self.service}: {len(self.user_categorical)} + {len(self.row_categorical)} categorical, "
                f"{len(self.user_numeric)} + {len(self.row_numeric)} numeric, {len(self.bags)} bags, "
                f"{len(self.user_known) + len(self.row_known)} known flags (user + candidate)")
