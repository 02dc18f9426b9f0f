"""Train/serve skew: the user features the server reads (Redis, through the serving reader,
TTLs enforced) against what a training row at the same time gets (Feast's point-in-time join
of the offline store), per feature, for a sample of users — `vitrine skew`.

Both sides are taken at the feature clock (the newest materialised end of the user views),
so on a consistent home every value agrees; a mismatch is skew a model would see. Push views
(`user_realtime`) are left out: their offline table only logs what the collector pushed, so
they are not model inputs (feature_repo/services.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from serving.features import UserFeatureReader, entity_views
from vitrine.featurestore.training import historical_features


@dataclass
class FeatureSkew:
    compared: int = 0
    mismatches: int = 0
    examples: list[tuple[str, Any, Any]] = field(default_factory=list)  # (user, served, offline)


@dataclass
class SkewReport:
    clock: str
    users: int
    features: dict[str, FeatureSkew]

    @property
    def mismatches(self) -> int:
        return sum(f.mismatches for f in self.features.values())

    def render(self) -> str:
        lines = [f"skew at the feature clock {self.clock}: {self.users:,} users, "
                 f"{len(self.features)} features, {self.mismatches:,} mismatching values"]
        bad = {k: v for k, v in self.features.items() if v.mismatches}
        if not bad:
            lines.append("every served value equals the offline point-in-time value")
        for name, f in sorted(bad.items(), key=lambda kv: -kv[1].mismatches):
            user, served, offline = f.examples[0]
            lines.append(f"  {name:<45} {f.mismatches:>6,} of {f.compared:,}  e.g. user {user}: "
                         f"served {_short(served)}, offline {_short(offline)}")
        return "\n".join(lines)


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NaT


def same(a: Any, b: Any) -> bool:
    """Equal as a model would see them: missing = missing, numbers to 1e-6 (float32 storage),
    lists element by element."""
    if _missing(a) or _missing(b):
        return _missing(a) and _missing(b)
    if isinstance(a, (list, tuple, np.ndarray)) or isinstance(b, (list, tuple, np.ndarray)):
        a, b = list(a), list(b)
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float, np.number)) and isinstance(b, (int, float, np.number)):
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
    if hasattr(a, "timestamp") or hasattr(b, "timestamp"):
        return pd.Timestamp(a) == pd.Timestamp(b)
    return a == b


def skew_check(store, client, project: str, users: list[str], examples: int = 3) -> SkewReport:
    from feast import FeatureService

    views = [v for v in entity_views(store, "user")
             if store.get_feature_view(v.name).stream_source is None]  # batch views only
    reader = UserFeatureReader(client, project, views)
    if reader.clock_us is None:
        raise ValueError("no user view has been materialised: run `vitrine features` first")
    clock = pd.Timestamp(reader.clock_us, unit="us", tz="UTC")
    service = FeatureService(name="skew_check", features=[store.get_feature_view(v.name) for v in views])
    offline = historical_features(store, [service], pd.DataFrame({"user_id": users, "event_timestamp": clock}))
    report = SkewReport(clock.isoformat(), len(users), {c: FeatureSkew() for c in reader.names})
    for row in offline.to_dict("records"):
        served = reader.read(str(row["user_id"])).values
        for column, f in report.features.items():
            f.compared += 1
            if not same(served.get(column), row.get(column)):
                f.mismatches += 1
                if len(f.examples) < examples:
                    f.examples.append((str(row["user_id"]), served.get(column), row.get(column)))
    return report
