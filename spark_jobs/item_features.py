"""Item and merchant features per daily snapshot: windowed counts, Bayesian CTR/CVR, decayed
heat, freshness; point-in-time item attributes from the catalogue history; merchant stats."""

from __future__ import annotations

from dataclasses import dataclass

from spark_jobs.io import Clock
from spark_jobs.windows import (
    COUNTS,
    WINDOWS,
    daily_counts,
    days_since,
    decay,
    fan_out,
    priors,
    smoothed,
    snapshot_frame,
    windowed_sums,
)
from vitrine.data.schemas import EVENT_WEIGHTS


@dataclass(frozen=True)
class ItemFeatureSettings:
    ctr_strength: float = 100.0  # prior pseudo-impressions
    cvr_strength: float = 50.0  # prior pseudo-clicks
    heat_half_life_days: float = 2.0
    impression_heat: float = 0.05  # an impression's heat relative to a click


def item_stats(events, items, clock: Clock, spark, settings: ItemFeatureSettings = ItemFeatureSettings()):
    """One row per (item, snapshot) for every item listed before the snapshot (zeros when
    it had no events) — or every item seen in events when there is no catalogue."""
    from pyspark.sql import functions as F

    snaps = snapshot_frame(spark, clock)
    daily = daily_counts(events, ["item_id"])
    fanned = fan_out(daily, snaps, clock.lookback_days)
    sums = windowed_sums(fanned, ["item_id"])
    heat_w = (F.col("impressions") * settings.impression_heat + F.col("clicks") * EVENT_WEIGHTS["click"]
              + F.col("carts") * EVENT_WEIGHTS["add_to_cart"] + F.col("purchases") * EVENT_WEIGHTS["purchase"])
    # heat's half-life scales with the look-back (2 days at 30): a sparse log's "hot" is slower
    heat_half_life = settings.heat_half_life_days * max(clock.lookback_days, 30) / 30
    heat = fanned.groupBy("item_id", "snap_day").agg(
        F.sum(heat_w * decay(F.col("age_days"), heat_half_life)).alias("heat"))
    counts = [f"{c}_{w}d" for w in WINDOWS for c in COUNTS]
    if items is not None:
        base = items.select("item_id", "created_at").crossJoin(F.broadcast(snaps)).where(
            F.col("created_at").isNull() | (F.col("created_at") < F.col("snap_ts")))
    else:
        base = sums.select("item_id", "snap_day", "snap_ts").withColumn("created_at", F.lit(None)
                                                                        .cast("timestamp"))
    s = (base.join(sums.drop("snap_ts"), ["item_id", "snap_day"], "left")
         .join(heat, ["item_id", "snap_day"], "left")
         .fillna(0, subset=[*counts, "heat", "spend_30d"]))
    pri = priors(sums)
    s = s.join(F.broadcast(pri), "snap_day", "left")
    has_impressions = F.coalesce(F.col("all_impressions"), F.lit(0)) > 0
    return s.select(
        "item_id", F.col("snap_ts").alias("event_timestamp"), *counts,
        F.col("spend_30d").cast("double").alias("revenue_30d"),
        F.when(has_impressions, smoothed(F.col("clicks_30d"), F.col("impressions_30d"), F.col("prior_ctr"),
                                         settings.ctr_strength)).cast("double").alias("ctr_30d"),
        smoothed(F.col("purchases_30d"), F.col("clicks_30d"), F.coalesce(F.col("prior_cvr"), F.lit(0.0)),
                 settings.cvr_strength).cast("double").alias("cvr_30d"),
        F.col("heat").cast("double").alias("heat"),
        days_since(F.col("created_at"), F.col("snap_ts")).alias("age_days"),
        days_since(F.col("last_event"), F.col("snap_ts")).alias("days_since_last_event"),
    )


def item_attributes(items_history):
    """Every accepted catalogue version, stamped with its `updated_at` (point in time)."""
    from pyspark.sql import functions as F

    if items_history is None:
        return None
    epoch = F.to_timestamp(F.lit("1970-01-01 00:00:00"))
    return items_history.select(
        "item_id",
        F.coalesce("updated_at", "created_at", epoch).alias("event_timestamp"),
        F.coalesce("merchant_id", F.lit("unknown")).alias("merchant_id"),
        F.coalesce("category", F.lit("unknown")).alias("category"),
        F.coalesce(F.split(F.col("category"), "/").getItem(0), F.lit("unknown")).alias("top_category"),
        F.coalesce("brand", F.lit("unknown")).alias("brand"),
        F.col("price").cast("double").alias("price"),
        F.col("rating").cast("double").alias("rating"),
        F.coalesce("title", F.lit("")).alias("title"),
        F.coalesce("tags", F.lit("")).alias("tags"),
        (F.coalesce("status", F.lit("online")) == "online").alias("is_online"),
        F.col("created_at"),
    )


def merchant_stats(events, items, merchants, clock: Clock, spark,
                   settings: ItemFeatureSettings = ItemFeatureSettings()):
    """Per (merchant, snapshot): listed items, 30-day counts and smoothed rates, rating."""
    from pyspark.sql import functions as F

    if "merchant_id" in events.columns:
        tagged = events
        if items is not None:
            tagged = events.drop("merchant_id").join(F.broadcast(items.select("item_id", "merchant_id")),
                                                     "item_id", "left")
    elif items is not None:
        tagged = events.join(F.broadcast(items.select("item_id", "merchant_id")), "item_id", "left")
    else:
        return None
    tagged = tagged.where(F.col("merchant_id").isNotNull())
    snaps = snapshot_frame(spark, clock)
    sums = windowed_sums(fan_out(daily_counts(tagged, ["merchant_id"]), snaps, clock.lookback_days), ["merchant_id"])
    pri = priors(sums)
    s = sums.join(F.broadcast(pri), "snap_day")
    out = s.select(
        "merchant_id", "snap_day", F.col("snap_ts").alias("event_timestamp"),
        "impressions_30d", "clicks_30d", "purchases_30d",
        F.col("spend_30d").cast("double").alias("revenue_30d"),
        F.when(F.col("all_impressions") > 0, smoothed(F.col("clicks_30d"), F.col("impressions_30d"),
                                                       F.col("prior_ctr"), settings.ctr_strength))
        .cast("double").alias("ctr_30d"),
        smoothed(F.col("purchases_30d"), F.col("clicks_30d"), F.col("prior_cvr"), settings.cvr_strength)
        .cast("double").alias("cvr_30d"),
    )
    if items is not None:
        listed = (items.crossJoin(F.broadcast(snaps))
                  .where(F.col("created_at").isNull() | (F.col("created_at") < F.col("snap_ts")))
                  .groupBy("merchant_id", "snap_day").agg(F.count("*").alias("listed_items")))
        out = out.join(listed, ["merchant_id", "snap_day"], "left")
    else:
        out = out.withColumn("listed_items", F.lit(None).cast("long"))
    if merchants is not None:
        out = out.join(F.broadcast(merchants.select("merchant_id", F.col("rating").cast("double")
                                                    .alias("merchant_rating"))), "merchant_id", "left")
    else:
        out = out.withColumn("merchant_rating", F.lit(None).cast("double"))
    return out.drop("snap_day")
