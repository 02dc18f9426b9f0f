"""Request checks shared by gRPC and HTTP. A bad request raises `InvalidRequest` whose
message says what to fix; `failure_of` is the one map from an exception to what both
transports answer (INVALID_ARGUMENT / HTTP 400; UNAVAILABLE / HTTP 503 when the online store
is down; UNAUTHENTICATED / HTTP 401 without a valid token; RESOURCE_EXHAUSTED / HTTP 429 past
the public rate limit; else INTERNAL / HTTP 500 with the details only in the server's log).

Events are checked row by row against the event contract (`vitrine.data.validate`) in
`serving.events`; here only the shape of the batch is checked.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from serving.api import RecommendRequest
from serving.config import ServingConfig
from vitrine.data.schemas import DEVICES, EVENTS, SCENES
from vitrine.errors import VitrineError

EVENT_FIELDS = frozenset(EVENTS.names)


class InvalidRequest(VitrineError):
    """The caller sent something we cannot answer; maps to INVALID_ARGUMENT / HTTP 400."""


class Unavailable(VitrineError):
    """A dependency (the online store) is down; the caller may retry: UNAVAILABLE / HTTP 503."""


class Unauthenticated(VitrineError):
    """No valid token for the operation (serving/security.py): UNAUTHENTICATED / HTTP 401."""


class RateLimited(VitrineError):
    """A public caller past its rate: RESOURCE_EXHAUSTED / HTTP 429 (retry after a second)."""


@dataclass(frozen=True)
class Failure:
    code: str  # the gRPC status name (also the `vitrine_errors_total` label)
    http: HTTPStatus
    message: str
    internal: bool  # the caller should log the exception: its details stay on the server


def failure_of(error: BaseException) -> Failure:
    if isinstance(error, InvalidRequest):
        return Failure("INVALID_ARGUMENT", HTTPStatus.BAD_REQUEST, str(error), internal=False)
    if isinstance(error, Unavailable):
        return Failure("UNAVAILABLE", HTTPStatus.SERVICE_UNAVAILABLE, str(error), internal=False)
    if isinstance(error, Unauthenticated):
        return Failure("UNAUTHENTICATED", HTTPStatus.UNAUTHORIZED, str(error), internal=False)
    if isinstance(error, RateLimited):
        return Failure("RESOURCE_EXHAUSTED", HTTPStatus.TOO_MANY_REQUESTS, str(error), internal=False)
    return Failure("INTERNAL", HTTPStatus.INTERNAL_SERVER_ERROR, "internal error (logged on the server)",
                   internal=True)


def recommend_request(config: ServingConfig, *, user_id: str, k: int, device: str = "", region: str = "",
                      scene: str = "", request_unix_s: int = 0, exclude: Iterable[str] = (),
                      request_id: str = "") -> RecommendRequest:
    user_id = (user_id or "").strip()
    if not user_id:
        raise InvalidRequest("user_id is required (a non-empty string)")
    if len(user_id) > config.max_user_id_len:
        raise InvalidRequest(f"user_id is {len(user_id)} characters; at most {config.max_user_id_len} allowed")
    if not isinstance(k, int) or isinstance(k, bool):
        raise InvalidRequest(f"k must be an integer, got {k!r}")
    if k <= 0 or k > config.max_k:
        raise InvalidRequest(f"k must be between 1 and {config.max_k}, got {k}")
    exclude = list(exclude)
    if len(exclude) > config.max_exclude:
        raise InvalidRequest(f"exclude_item_ids has {len(exclude)} ids; at most {config.max_exclude} allowed")
    device, scene = (device or "").strip().lower(), (scene or "").strip().lower()
    if device and device not in DEVICES:
        raise InvalidRequest(f"context.device {device!r} is unknown; use one of {', '.join(DEVICES)} or leave it empty")
    if scene and scene not in SCENES:
        raise InvalidRequest(f"context.scene {scene!r} is unknown; use one of {', '.join(SCENES)} or leave it empty")
    if request_unix_s < 0:
        raise InvalidRequest(f"context.request_unix_s must be >= 0 (0 = now), got {request_unix_s}")
    return RecommendRequest(user_id=user_id, k=k, device=device, region=(region or "").strip(), scene=scene,
                            request_unix_s=int(request_unix_s), exclude=frozenset(str(e) for e in exclude),
                            request_id=request_id or uuid.uuid4().hex)


def batch_size(config: ServingConfig, n: int) -> None:
    """A TrackEvents batch holds 1 to `max_events` events."""
    if not n:
        raise InvalidRequest("events is empty: send at least one event")
    if n > config.max_events:
        raise InvalidRequest(f"{n} events in one request; at most {config.max_events} allowed (split the batch)")


def event_batch(config: ServingConfig, events: Sequence[Any]) -> list[dict[str, Any]]:
    """The shape of a TrackEvents batch: a non-empty list of objects with known fields."""
    if not isinstance(events, Sequence) or isinstance(events, (str, bytes)):
        raise InvalidRequest("events must be a list of event objects")
    batch_size(config, len(events))
    out = []
    for i, event in enumerate(events):
        if not isinstance(event, Mapping):
            raise InvalidRequest(f"events[{i}] must be an object with fields {sorted(EVENT_FIELDS)}")
        unknown = set(event) - EVENT_FIELDS
        if unknown:
            raise InvalidRequest(f"events[{i}] has unknown fields {sorted(unknown)}; known: {sorted(EVENT_FIELDS)}")
        out.append(dict(event))
    return out
