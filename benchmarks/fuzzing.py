"""Seeded random gRPC requests against a running server: random bytes for either method,
`Recommend` and `TrackEvents` messages with random strings (unicode, control characters,
3,000-character values), extreme numbers (int64 limits, NaN, ±inf, 10⁶-item k), odd times and
1 ms deadlines, interleaved with well-formed requests. Used by the suite (1,000 requests,
`tests/integration/test_serving.py`) and by `benchmarks/faults/fuzz.py` (10,000, recorded).

Every answer must be OK or a status a caller can act on (INVALID_ARGUMENT, UNAVAILABLE,
DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED) with a message — never INTERNAL or UNKNOWN."""

from __future__ import annotations

import random
import string

ALLOWED = ("INVALID_ARGUMENT", "UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED")


def fuzz(port: int, requests: int, seed: int = 7, users=("u1", "u2"), items=("i1", "i2")
         ) -> tuple[dict[str, int], list[tuple[int, str, str, str]]]:
    """(answers by status code, the answers that broke the rule: (request, kind, code, details))."""
    import grpc

    from serving.proto import SERVICE_NAME, pb

    rng = random.Random(seed)
    alphabet = string.printable + "ßü中文🙂\x00\x01\x7f\u202e"

    def text(n: int | None = None) -> str:
        n = rng.choice([0, 1, 5, 40, 300, 3000]) if n is None else n
        return "".join(rng.choice(alphabet) for _ in range(n))

    def number() -> int:
        return rng.choice([0, 1, -1, 7, 2**31, -(2**31), 2**63 - 1, -(2**63), 10**6])

    def event() -> pb.Event:
        kw = {"user_id": rng.choice(["fuzz-user", "", text()]), "item_id": rng.choice([*items, text()]),
              "event_type": rng.choice(["click", "purchase", "impression", text(5)]),
              "event_time": rng.choice(["", "2262-04-11T00:00:00Z", "1677-01-01", text(20),
                                        "2026-12-01T00:00:00+14:00", "9999-12-31T23:59:59Z"]),
              "session_id": text(), "device": rng.choice(["", "ios", text(4)]), "region": text(),
              "scene": rng.choice(["", "home", text(3)])}
        if rng.random() < 0.5:
            kw["position"] = number()
        if rng.random() < 0.5:
            kw["quantity"] = number()
        if rng.random() < 0.5:
            kw["price"] = rng.choice([0.0, -1.0, 1e308, -1e308, float("nan"), float("inf"), 3.5])
        return pb.Event(**kw)

    outcomes: dict[str, int] = {}
    bad: list[tuple[int, str, str, str]] = []
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        def method(name: str, request, response):
            return channel.unary_unary(f"/{SERVICE_NAME}/{name}", request_serializer=request,
                                       response_deserializer=response)

        raw = {m: method(m, lambda b: b, lambda b: b) for m in ("Recommend", "TrackEvents")}
        recommend = method("Recommend", pb.RecommendRequest.SerializeToString, pb.RecommendResponse.FromString)
        track = method("TrackEvents", pb.TrackEventsRequest.SerializeToString, pb.TrackEventsResponse.FromString)
        for i in range(requests):
            kind = rng.choice(["bytes", "recommend", "track", "valid"])
            try:
                if kind == "valid":  # well-formed requests interleaved: the server keeps answering them
                    recommend(pb.RecommendRequest(user_id=rng.choice([*users, text(8)]) or "x",
                                                  k=rng.choice([1, 5, 200])), timeout=5)
                elif kind == "bytes":
                    raw[rng.choice(["Recommend", "TrackEvents"])](rng.randbytes(rng.choice([1, 10, 300])), timeout=5)
                elif kind == "recommend":
                    ctx = pb.Context(device=rng.choice(["", "ios", text(4)]), region=text(), scene=text(3),
                                     request_unix_s=rng.choice([0, 1, 2**62, -5]))
                    recommend(pb.RecommendRequest(user_id=rng.choice([users[0], "", text()]),
                                                  k=rng.choice([0, 1, 5, -3, 10**6]),
                                                  exclude_item_ids=[text(3) for _ in range(rng.choice([0, 2, 50]))],
                                                  context=ctx), timeout=rng.choice([5, 5, 0.001]))
                else:
                    track(pb.TrackEventsRequest(events=[event() for _ in range(rng.choice([0, 1, 3]))]), timeout=5)
                outcomes["OK"] = outcomes.get("OK", 0) + 1
            except grpc.RpcError as e:
                code = e.code().name
                outcomes[code] = outcomes.get(code, 0) + 1
                if code not in ALLOWED or (code != "DEADLINE_EXCEEDED" and not e.details()):
                    bad.append((i, kind, code, e.details() or ""))
    return outcomes, bad
