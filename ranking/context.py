"""The `context` on-demand features computed per request, exactly as the Feast on-demand view
`feature_repo/context_views.py::context` computes them for training rows — in NumPy, so a
request does not go through pandas (tested equal to Feast's own transformation).

hour_of_day, day_of_week (Monday 0) and is_weekend from the request time in UTC; device_idx
the device code (-1 when unknown); price_vs_user the candidate's price over the user's price
level (NaN when either is unknown, inf when the level is 0 — as pandas divides).
"""

from __future__ import annotations

from typing import Any

import numpy as np

PREFIX = "context__"
FEATURES = ("hour_of_day", "day_of_week", "is_weekend", "device_idx", "price_vs_user")
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


def _float(value: Any) -> float:
    try:
        return float(value) if value is not None else np.nan
    except (TypeError, ValueError):
        return np.nan


def request_context(request_unix_s: int, device_code: int | None) -> dict[str, int]:
    """The context features that are the same for every candidate of a request (Feast full names)."""
    t = int(request_unix_s)
    weekday = (t // 86400 + _EPOCH_WEEKDAY) % 7
    return {f"{PREFIX}hour_of_day": (t // 3600) % 24, f"{PREFIX}day_of_week": weekday,
            f"{PREFIX}is_weekend": int(weekday >= 5),
            f"{PREFIX}device_idx": -1 if device_code is None else int(device_code)}


def price_vs_user(candidate_prices: Any, price_level: float | None) -> np.ndarray:
    """Each candidate's price over the user's price level (float64; NaN when either is unknown)."""
    prices = np.asarray(candidate_prices)
    prices = np.array([_float(p) for p in prices.ravel()], dtype=np.float64) if prices.dtype == object \
        else prices.astype(np.float64).ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        return prices / np.float64(_float(price_level))


def context_features(request_unix_s: int, device_code: int | None, candidate_prices: Any,
                     price_level: float | None) -> dict[str, np.ndarray]:
    """`context__*` columns (Feast full names) for `n = len(candidate_prices)` candidates of one
    request: int64 arrays for the calendar/device features, float64 for `price_vs_user`."""
    ratio = price_vs_user(candidate_prices, price_level)
    out = {k: np.full(len(ratio), v, dtype=np.int64) for k, v in request_context(request_unix_s, device_code).items()}
    out[f"{PREFIX}price_vs_user"] = ratio
    return out
