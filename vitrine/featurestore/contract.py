"""Feature services as the models' contract: what a model reads, and how each field is encoded.

A model's inputs are the fields of its Feast `FeatureService` (`feature_repo/services.py`), in
the service's order. How a field is encoded follows from its Feast type, unless the field's
tags say otherwise (`tags={"encoding": ...}` on the `Field`):

- `categorical` (default for `String`): a vocabulary fitted on the training rows (0: unknown);
- `numeric` (default for `Int*`, `Float*`, `Bool`): signed log1p, standardised or bucketed;
- `bag` (tag only, on an `Array(String)`, with tags `weights`: a sibling `Array(Float*)` field,
  and `matches`: a candidate field's name): the user's weighted values in the matched
  field's vocabulary, plus the user's weight of each candidate's own value (a cross);
- `item_ids` (tag only, on an `Array(String)` of item ids): the two-tower's mean of its item-id
  embeddings (the recent items); not a ranker input;
- `text` (tag only): the two-tower's token bag (titles); not a ranker input;
- `none` (default for `UnixTimestamp` and other lists): not an input.

A view may name one of its fields as its `known_flag` (view tag): the model also gets a 0/1
input "this entity has a row in this view" read from that field. A view tag
`"<field>.<tag>": value` sets a field's tag from the view (on-demand views need it: Feast's
inference rejects their fields' own tags).

Training reads the service from the Feast registry (what `feast apply` registered), so adding
a field to a view and to a new service version reaches a model without Python edits
(`docs/features.md`). The layout a model was trained with is saved with it; serving reads it
from there, not from the registry.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vitrine.errors import VitrineError

ENCODINGS = ("categorical", "numeric", "bag", "item_ids", "text", "none")
ENTITIES = ("user", "item", "merchant")


class ContractError(VitrineError, ValueError):
    """A feature service a model cannot be built from (what to fix is in the message)."""


@dataclass(frozen=True)
class ServiceField:
    """One field of a feature service, as a model sees it."""

    view: str
    feature: str
    dtype: str  # "string" | "int" | "float" | "bool" | "timestamp" | "string_list" | "float_list" | "other"
    entity: str | None  # "user" | "item" | "merchant"; None: computed per request (on-demand view)
    tags: dict[str, str] = field(default_factory=dict)
    known_flag: bool = False  # the view's `known_flag` tag names this field

    @property
    def column(self) -> str:
        """The Feast full feature name (`view__feature`), as joins and online reads return it."""
        return f"{self.view}__{self.feature}"

    @property
    def encoding(self) -> str:
        tagged = self.tags.get("encoding")
        if tagged is not None:
            if tagged not in ENCODINGS:
                raise ContractError(f"{self.column}: encoding tag {tagged!r} is not one of {', '.join(ENCODINGS)}")
            if tagged == "bag" and not (self.tags.get("weights") and self.tags.get("matches")):
                raise ContractError(f"{self.column}: a bag needs tags 'weights' (its weight field) and "
                                    f"'matches' (the candidate field its values come from)")
            return tagged
        if self.dtype == "string":
            return "categorical"
        if self.dtype in ("int", "float", "bool"):
            return "numeric"
        return "none"

    def to_json(self) -> dict[str, Any]:
        return {"view": self.view, "feature": self.feature, "dtype": self.dtype, "entity": self.entity,
                "tags": dict(self.tags), "known_flag": self.known_flag}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ServiceField:
        return cls(d["view"], d["feature"], d["dtype"], d["entity"], dict(d.get("tags") or {}),
                   bool(d.get("known_flag")))


def dtype_name(dtype: Any) -> str:
    """A Feast type as one of `ServiceField.dtype`'s names."""
    from feast.types import Array, Bool, Float32, Float64, Int32, Int64, String, UnixTimestamp

    if dtype in (String,):
        return "string"
    if dtype in (Int32, Int64):
        return "int"
    if dtype in (Float32, Float64):
        return "float"
    if dtype in (Bool,):
        return "bool"
    if dtype in (UnixTimestamp,):
        return "timestamp"
    if isinstance(dtype, Array):
        base = dtype.base_type
        return "string_list" if base == String else "float_list" if base in (Float32, Float64) else "other"
    return "other"


def _entity_of(view: Any) -> str | None:
    from feast import OnDemandFeatureView

    if isinstance(view, OnDemandFeatureView):
        return None  # computed from the request
    names = list(view.entities)
    if len(names) != 1 or names[0] not in ENTITIES:
        raise ContractError(f"view {view.name}: models read views of one entity ({', '.join(ENTITIES)}), "
                            f"not {names}")
    return names[0]


def fields_of(service: Any, view_of) -> list[ServiceField]:
    """The fields of a FeastService object in its order; `view_of(name)` gives a view object."""
    out: list[ServiceField] = []
    for projection in service.feature_view_projections:
        view = view_of(projection.name)
        view_tags = getattr(view, "tags", None) or {}
        flag = view_tags.get("known_flag")
        names = {f.name for f in view.features}
        if flag is not None and flag not in names:
            raise ContractError(f"view {view.name}: known_flag {flag!r} is not one of its fields")
        for f in projection.features:
            tags = {k.split(".", 1)[1]: v for k, v in view_tags.items() if k.startswith(f"{f.name}.")}
            tags.update(f.tags or {})
            out.append(ServiceField(projection.name_to_use(), f.name, dtype_name(f.dtype), _entity_of(view),
                                    tags, f.name == flag))
    return out


def service_fields(store: Any, name: str) -> list[ServiceField]:
    """A registered feature service's fields (the registry `feast apply` wrote)."""
    try:
        service = store.get_feature_service(name)
    except Exception as e:  # Feast raises its own FeatureServiceNotFoundException
        known = sorted(s.name for s in store.list_feature_services())
        raise ContractError(f"no feature service {name!r} in the registry (registered: {', '.join(known)}); "
                            f"define it in feature_repo/services.py and run `vitrine feast apply`") from e

    def view_of(view_name: str):
        try:
            return store.get_feature_view(view_name)
        except Exception:
            return store.get_on_demand_feature_view(view_name)

    return fields_of(service, view_of)


def repo_fields(name: str, repo: Path | None = None) -> list[ServiceField]:
    """A service's fields read from the repository's Python definitions (no registry): for
    tests and tools that have no applied home. The definitions import each other by module
    name, as `feast apply` imports them."""
    from feast.base_feature_view import BaseFeatureView

    from vitrine.featurestore.repo import FEATURE_REPO

    root = str(repo or FEATURE_REPO)
    sys.path.insert(0, root)
    try:
        services = importlib.import_module("services")
        objects: dict[str, Any] = {}
        for path in sorted(Path(root).glob("*.py")):
            for value in vars(importlib.import_module(path.stem)).values():
                if isinstance(value, BaseFeatureView):
                    objects[value.name] = value
    finally:
        sys.path.remove(root)
    service = getattr(services, name, None)
    if service is None:
        raise ContractError(f"no feature service {name!r} in {root}/services.py")
    return fields_of(service, objects.__getitem__)
