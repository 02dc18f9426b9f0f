"""Shared building blocks: daily aggregates fanned out to snapshot windows, smoothed rates.

Everything is computed from per-(key, day) daily aggregates joined to the snapshot days
whose look-back contains them (the clock's, at least 30 days), so one pass serves every
snapshot and every window.
"""

from __future__ import annotations

from spark_jobs.io import Clock
from vitrine.data.schemas import EVENT_WEIGHTS

WINDOWS = (1, 7, 30)
LOOKBACK_DAYS = max(WINDOWS)
COUNTS = {"impressions": "impression", "clicks": "click", "carts": "add_to_cart",
          "purchases": "purchase"}


def snapshot_frame(spark, clock: Clock):
    from pyspark.sql import functions as F

    return spark.createDataFrame([(d,) for d in clock.snapshots], "snap_day date").withColumn(
        "snap_ts", F.to_timestamp(F.col("snap_day")))


def event_weight():
    """Column: each event's weight by type (impression 0, click 1, cart 3, purchase 5)."""
    from pyspark.sql import functions as F

    weight = F.lit(0.0)
    for name, w in EVENT_WEIGHTS.items():
        weight = F.when(F.col("event_type") == name, F.lit(w)).otherwise(weight)
    return weight


def decay(age_days_col, half_life_days: float):
    """Column: exp-decay weight for a daily aggregate `age_days` old (mid-day: age - 0.5)."""
    from pyspark.sql import functions as F

    return F.exp(-F.lit(0.6931471805599453 / half_life_days) * (age_days_col - F.lit(0.5)))


def daily_counts(events, keys: list[str]):
    """Per (keys, day): event counts by type, weighted score, spend, last event times."""
    from pyspark.sql import functions as F

    t = F.col("event_type")
    aggs = [F.sum(F.when(t == name, 1).otherwise(0)).alias(col) for col, name in COUNTS.items()]
    weight = event_weight()
    qty = F.coalesce(F.col("quantity"), F.lit(1))
    aggs += [
        F.sum(weight).alias("score"),
        F.sum(F.when(t == "purchase", F.coalesce(F.col("price"), F.lit(0.0)) * qty).otherwise(0.0))
        .alias("spend"),
        F.max("event_time").alias("last_event"),
        F.max(F.when(t != "impression", F.col("event_time"))).alias("last_positive"),
        F.max(F.when(t == "purchase", F.col("event_time"))).alias("last_purchase"),
    ]
    return events.groupBy(*keys, "day").agg(*aggs)


def fan_out(daily, snapshots, lookback_days: int = LOOKBACK_DAYS):
    """Attach each daily row to every snapshot whose look-back window contains it (the clock's
    look-back: at least the 30-day window; rows older than 30 days count in no window but
    keep their key in the snapshot, with recency and preferences)."""
    from pyspark.sql import functions as F

    joined = daily.join(F.broadcast(snapshots),
                        (daily.day < snapshots.snap_day)
                        & (daily.day >= F.date_sub(snapshots.snap_day, max(lookback_days, LOOKBACK_DAYS))))
    return joined.withColumn("age_days", F.datediff("snap_day", "day"))  # 1 = the day before


def windowed_sums(fanned, keys: list[str]):
    """counts per window (1/7/30 days) plus recency, per (keys, snapshot)."""
    from pyspark.sql import functions as F

    aggs = []
    for w in WINDOWS:
        inside = F.col("age_days") <= w
        for col in COUNTS:
            aggs.append(F.sum(F.when(inside, F.col(col)).otherwise(0)).cast("long").alias(f"{col}_{w}d"))
    aggs += [
        F.sum(F.when(F.col("age_days") <= LOOKBACK_DAYS, F.col("spend")).otherwise(0.0)).alias("spend_30d"),
        F.max("last_event").alias("last_event"),
        F.max("last_positive").alias("last_positive"),
        F.max("last_purchase").alias("last_purchase"),
    ]
    return fanned.groupBy(*keys, "snap_day", "snap_ts").agg(*aggs)


def smoothed(successes, trials, prior, strength: float):
    """Bayesian (Beta prior) rate: (s + m·p) / (n + m); null when there are no trials at all."""
    from pyspark.sql import functions as F

    return F.when(trials.isNull(), F.lit(None)).otherwise(
        (successes + F.lit(strength) * prior) / (trials + F.lit(strength)))


def days_since(ts_col, snap_ts_col):
    from pyspark.sql import functions as F

    return F.when(ts_col.isNull(), F.lit(None)).otherwise(
        (F.unix_micros(snap_ts_col) - F.unix_micros(ts_col)) / F.lit(86_400_000_000.0))


def priors(sums, clicks: str = "clicks_30d", impressions: str = "impressions_30d",
           purchases: str = "purchases_30d"):
    """Global CTR and CVR per snapshot (the means the per-key rates shrink towards)."""
    from pyspark.sql import functions as F

    return sums.groupBy("snap_day").agg(
        (F.sum(clicks) / F.greatest(F.sum(impressions), F.lit(1))).alias("prior_ctr"),
        (F.sum(purchases) / F.greatest(F.sum(clicks), F.lit(1))).alias("prior_cvr"),
        F.sum(impressions).alias("all_impressions"),
    )
