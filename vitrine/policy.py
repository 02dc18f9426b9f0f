"""The serving policy: how the served answer is put together, as chosen on a validation cut
by `vitrine evaluate pipeline` and published like a model (`<home>/models/pipeline/<version>/`
with `policy.json` and a manifest; `latest` switched once it verifies).

- `route_weights`: the final blend of recall — a candidate's score is the weighted sum of
  its normalised scores in every route that found it (`retrieval.merger.Merger`); a route
  missing from the map weighs 0. Empty map: the merger's original rule (best route score).
- `route_params`: route settings chosen with the blend (how many of the user's recent items
  the neighbour routes expand, and how fast their weight decays).
- `coarse_weight`, `fine_weight`: the ranker's share of its stage's score, the rest being the
  candidate's recall score (both min-max normalised within the request). 1.0 = the ranker
  alone, the pipeline as it always ran; below 1 the rankers re-order recall's list instead
  of replacing its order — chosen on validation with the stage switches.
- `coarse`, `fine`, `diversity`: stage switches. A stage that did not beat the stage before
  it on validation is off, with the reason in `reasons`; every A/B arm runs only the stages
  the policy leaves on.
- `warnings`: what a person must know, e.g. the answer losing to popularity on validation
  (serving logs them at load).

No published policy = the defaults below = the pipeline as it always ran.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

POLICY_FILE = "policy.json"


@dataclass(frozen=True)
class Policy:
    route_weights: dict[str, float] = field(default_factory=dict)
    route_params: dict[str, dict[str, float | str]] = field(default_factory=dict)  # e.g. item_cf recent, hot signal
    coarse: bool = True
    fine: bool = True
    diversity: bool = True
    coarse_weight: float = 1.0
    fine_weight: float = 1.0
    reasons: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    validation: dict = field(default_factory=dict)  # the figures the choices were made on

    def __post_init__(self) -> None:
        for name, w in self.route_weights.items():
            if not isinstance(w, int | float) or w < 0 or w != w:
                raise ValueError(f"route weight {name}={w!r}: weights must be numbers >= 0")
        for name in ("coarse_weight", "fine_weight"):
            w = getattr(self, name)
            if not isinstance(w, int | float) or not 0 <= w <= 1:
                raise ValueError(f"{name}={w!r}: the ranker's share of its stage's score is a number in [0, 1]")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["warnings"] = list(self.warnings)
        return out

    @classmethod
    def from_dict(cls, raw: dict) -> Policy:
        known = set(cls.__dataclass_fields__)
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown policy fields {sorted(unknown)}; known: {sorted(known)}")
        raw = dict(raw)
        raw["route_weights"] = {str(k): float(v) for k, v in (raw.get("route_weights") or {}).items()}
        raw["warnings"] = tuple(raw.get("warnings") or ())
        raw["route_params"] = {str(r): {str(k): v if isinstance(v, str) else float(v) for k, v in p.items()}
                               for r, p in (raw.get("route_params") or {}).items()}
        return cls(**raw)

    def save(self, directory: Path) -> Path:
        path = Path(directory) / POLICY_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, directory: Path) -> Policy:
        return cls.from_dict(json.loads((Path(directory) / POLICY_FILE).read_text()))

    def describe(self) -> str:
        def state(s: str) -> str:
            w = getattr(self, f"{s}_weight", 1.0)
            return f"{s} {'on' if getattr(self, s) else 'off'}" + (f" ({w:.2f} of the score)" if w < 1 else "")

        stages = ", ".join(state(s) for s in ("coarse", "fine", "diversity"))
        blend = ", ".join(f"{k} {v:.2f}" for k, v in sorted(self.route_weights.items(), key=lambda kv: -kv[1]))
        return f"stages: {stages}; recall blend: {blend or 'best route score'}"
