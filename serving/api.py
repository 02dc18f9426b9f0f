"""Transport-agnostic request and answer types: the gRPC servicer and the HTTP gateway both
convert to and from these, and the core (`serving.core.Core`) only sees these."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RecommendRequest:
    user_id: str
    k: int
    device: str = ""
    region: str = ""
    scene: str = ""
    request_unix_s: int = 0  # 0 = now
    exclude: frozenset[str] = frozenset()
    request_id: str = ""


@dataclass
class RankedItem:
    item_id: str
    score: float
    p_ctr: float = 0.0
    p_cvr: float = 0.0
    routes: list[str] = field(default_factory=list)


@dataclass
class Recommendation:
    items: list[RankedItem]
    model_version: str
    ab_bucket: str
    request_id: str
    degraded: bool = False
    degraded_reason: str = ""
    stage_ms: dict[str, float] = field(default_factory=dict)
    # the user features the answer was computed from, when the exposure log samples them (not sent)
    features: dict | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {
            "request_id": self.request_id, "ab_bucket": self.ab_bucket, "model_version": self.model_version,
            "degraded": self.degraded, "degraded_reason": self.degraded_reason,
            "stage_ms": {k: round(v, 3) for k, v in self.stage_ms.items()},
            "items": [{"item_id": i.item_id, "score": i.score, "p_ctr": i.p_ctr, "p_cvr": i.p_cvr,
                       "routes": list(i.routes)} for i in self.items],
        }


@dataclass(frozen=True)
class Rejection:
    index: int  # position of the event in the request
    field: str
    reason: str


@dataclass
class TrackResult:
    accepted: int = 0
    duplicates: int = 0
    rejections: list[Rejection] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"accepted": self.accepted, "duplicates": self.duplicates,
                "rejections": [{"index": r.index, "field": r.field, "reason": r.reason} for r in self.rejections]}
