"""A/B results from the logs: the exposure log (every answer, by arm) joined to the events
that name an answer's `request_id`.

Per arm: answers, exposures (items shown), clicks and purchases of shown items (an item
clicked twice in one answer counts once), CTR = clicks / exposures, CVR = purchases / clicks,
revenue (price × quantity of those purchases) per 1,000 exposures — with 95 % confidence
intervals (Wilson for the rates, normal for revenue) and, against the control arm, a
two-sided two-proportion z-test on CTR and on CVR.

    vitrine report ab [--since 2026-12-01]
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds

from vitrine.config import Home
from vitrine.data.schemas import EVENTS

Z95 = 1.959963984540054


@dataclass
class ArmResult:
    arm: str
    answers: int
    exposures: int
    clicks: int
    purchases: int
    revenue: float
    ctr: float
    ctr_ci: tuple[float, float]
    cvr: float
    cvr_ci: tuple[float, float]
    revenue_per_1000: float
    revenue_per_1000_ci: tuple[float, float]
    ctr_p_value: float | None = None  # vs the control arm; None for the control itself
    cvr_p_value: float | None = None


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (0, 0 when n is 0)."""
    if n == 0:
        return 0.0, 0.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def two_proportion_p(s1: int, n1: int, s2: int, n2: int) -> float | None:
    """Two-sided p-value of the pooled two-proportion z-test (None without data)."""
    if n1 == 0 or n2 == 0:
        return None
    pooled = (s1 + s2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = (s1 / n1 - s2 / n2) / se
    return math.erfc(abs(z) / math.sqrt(2))


def _read(root: Path, columns: list[str], schema=None, since: datetime | None = None, time_column: str = "") \
        -> pd.DataFrame:
    if not root.exists() or not any(root.rglob("*.parquet")):
        return pd.DataFrame(columns=columns)
    data = ds.dataset(root, format="parquet", schema=schema, partitioning="hive" if schema is None else None,
                      ignore_prefixes=[".", "_"])
    flt = ds.field(time_column) >= pd.Timestamp(since) if since is not None else None
    return data.to_table(columns=columns, filter=flt).to_pandas()


def ab_results(home: Home, since: datetime | None = None, control: str | None = None) -> list[ArmResult]:
    """Every arm's results since `since`; p-values against `control` (default: the arm with
    the most answers)."""
    shown = _read(home.exposures, ["request_id", "arm", "item_id", "served_at"], since=since, time_column="served_at")
    events = _read(home.events, ["request_id", "item_id", "event_type", "price", "quantity", "event_time"],
                   schema=EVENTS.arrow_schema(), since=since, time_column="event_time")
    events = events[events["request_id"].notna() & events["event_type"].isin(["click", "purchase"])]
    shown = shown.drop_duplicates(["request_id", "item_id"])
    joined = events.merge(shown[["request_id", "item_id", "arm"]], on=["request_id", "item_id"], how="inner")
    joined["revenue"] = joined["price"].fillna(0.0) * joined["quantity"].fillna(1).astype(float)
    clicks = joined[joined["event_type"] == "click"].drop_duplicates(["request_id", "item_id"])
    buys = joined[joined["event_type"] == "purchase"]
    bought = buys.drop_duplicates(["request_id", "item_id"])
    out: dict[str, ArmResult] = {}
    for arm, rows in shown.groupby("arm", sort=True):
        n = len(rows)
        c = int((clicks["arm"] == arm).sum())
        b = int((bought["arm"] == arm).sum())
        revenue_per_exposure = buys[buys["arm"] == arm].groupby(["request_id", "item_id"])["revenue"].sum()
        total = float(revenue_per_exposure.sum())
        mean = total / n
        # variance over every exposure (zero revenue for the ones not bought)
        values = revenue_per_exposure.to_numpy()
        var = (float(((values - mean) ** 2).sum()) + (n - len(values)) * mean * mean) / max(n - 1, 1)
        half = Z95 * math.sqrt(var / n) * 1000
        out[str(arm)] = ArmResult(
            arm=str(arm), answers=int(rows["request_id"].nunique()), exposures=n, clicks=c, purchases=b,
            revenue=total, ctr=c / n, ctr_ci=wilson(c, n), cvr=b / c if c else 0.0, cvr_ci=wilson(b, c),
            revenue_per_1000=mean * 1000, revenue_per_1000_ci=(max(0.0, mean * 1000 - half), mean * 1000 + half))
    if not out:
        return []
    base = out.get(control) if control else max(out.values(), key=lambda r: r.answers)
    if base is None:
        raise ValueError(f"no arm {control!r} in the exposure log; arms: {sorted(out)}")
    for r in out.values():
        if r is not base:
            r.ctr_p_value = two_proportion_p(r.clicks, r.exposures, base.clicks, base.exposures)
            r.cvr_p_value = two_proportion_p(r.purchases, r.clicks, base.purchases, base.clicks)
    return [base, *[r for r in out.values() if r is not base]]


def markdown(results: list[ArmResult]) -> str:
    if not results:
        return "No answers in the exposure log for this period."

    def ci(pair: tuple[float, float], scale: float = 100.0, digits: int = 2) -> str:
        return f"[{pair[0] * scale:.{digits}f}, {pair[1] * scale:.{digits}f}]"

    def p(value: float | None) -> str:
        return "control" if value is None else f"{value:.3g}"

    lines = ["| arm | answers | exposures | clicks | CTR % (95 % CI) | p (CTR) | purchases | CVR % (95 % CI) "
             "| p (CVR) | revenue / 1,000 exposures (95 % CI) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.arm} | {r.answers:,} | {r.exposures:,} | {r.clicks:,} | {r.ctr * 100:.2f} {ci(r.ctr_ci)} "
                     f"| {p(r.ctr_p_value)} | {r.purchases:,} | {r.cvr * 100:.2f} {ci(r.cvr_ci)} | {p(r.cvr_p_value)} "
                     f"| {r.revenue_per_1000:,.2f} {ci(r.revenue_per_1000_ci, 1.0)} |")
    return "\n".join(lines)


def write_report(home: Home, results: list[ArmResult]) -> Path:
    out = home.reports / "ab"
    out.mkdir(parents=True, exist_ok=True)
    (out / "ab.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
    (out / "ab.md").write_text("# A/B results\n\n" + markdown(results) + "\n")
    return out
