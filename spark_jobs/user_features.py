"""User features per daily snapshot: behaviour windows, smoothed rates, recency, decayed
category/brand preferences, price level, behaviour segment, recent items; and the profile."""

from __future__ import annotations

from dataclasses import dataclass

from spark_jobs.io import POSITIVE_TYPES, Clock
from spark_jobs.windows import (
    COUNTS,
    LOOKBACK_DAYS,
    WINDOWS,
    daily_counts,
    days_since,
    decay,
    event_weight,
    fan_out,
    priors,
    smoothed,
    snapshot_frame,
    windowed_sums,
)


@dataclass(frozen=True)
class UserFeatureSettings:
    rate_strength: float = 20.0  # pseudo-impressions / pseudo-clicks of the prior
    preference_half_life_days: float = 7.0
    top_k_preferences: int = 3
    recent_items: int = 20
    bought_items: int = 50
    # segments: high_value = purchases_30d >= the purchase threshold; potential = any purchase,
    # cart, or at least the click threshold's clicks in 30 days; normal = the rest. Both
    # thresholds rise with the log's activity (`segment_thresholds`); these are their floors
    high_value_purchases: int = 2
    potential_clicks: int = 5
    high_value_share: float = 0.1


def segment_thresholds(sums, clock: Clock, settings: UserFeatureSettings) -> tuple[int, int]:
    """(purchases for high_value, clicks for potential), from the users with a click in the 30
    days before the last snapshot: the top `high_value_share` of them by purchases and the
    median of their clicks, never below the settings' floors. On a log as active as the
    generator's the floors hold; on MovieLens (every rating a click, every rating ≥ 4 a
    purchase) the floors made 90 % of the active users high_value and the segment meant
    nothing, and the thresholds become ~97 purchases and ~27 clicks."""
    import math

    from pyspark.sql import functions as F

    active = sums.where((F.col("snap_day") == F.lit(clock.last)) & (F.col("clicks_30d") > 0))
    q = active.approxQuantile(["purchases_30d", "clicks_30d"], [1 - settings.high_value_share, 0.5], 0.01)
    purchases = math.ceil(q[0][0]) if q and q[0] else 0
    clicks = math.ceil(q[1][1]) if len(q) > 1 and q[1] else 0
    return max(settings.high_value_purchases, purchases), max(settings.potential_clicks, clicks)


def _top_k(scored, key: str, value: str, k: int, prefix: str):
    """Top-k values per (key, snapshot) by score → arrays of names and normalised weights."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    w = Window.partitionBy(key, "snap_day").orderBy(F.desc("pref"), F.asc(value))
    ranked = scored.withColumn("rank", F.row_number().over(w)).where(F.col("rank") <= k)
    total = F.sum("pref").over(Window.partitionBy(key, "snap_day"))
    ranked = ranked.withColumn("share", (F.col("pref") / total).cast("float"))
    return ranked.groupBy(key, "snap_day").agg(
        F.sort_array(F.collect_list(F.struct("rank", value, "share"))).alias("_top")).select(
        key, "snap_day",
        F.col(f"_top.{value}").alias(f"top_{prefix}s"),
        F.col("_top.share").alias(f"top_{prefix}_weights"))


def user_behaviour(events, items, clock: Clock, spark, settings: UserFeatureSettings = UserFeatureSettings()):
    """One row per (user active in the look-back before a snapshot, snapshot): the clock's
    look-back, 30 days on a dense log, longer on a sparse one (`spark_jobs.io.lookback_for`)."""
    from pyspark.sql import functions as F

    snaps = snapshot_frame(spark, clock)
    sums = windowed_sums(fan_out(daily_counts(events, ["user_id"]), snaps, clock.lookback_days), ["user_id"])
    pri = priors(sums)
    high_value, potential = segment_thresholds(sums, clock, settings)
    s = sums.join(F.broadcast(pri), "snap_day")
    has_impressions = F.col("all_impressions") > 0
    out = s.select(
        "user_id", "snap_day", F.col("snap_ts").alias("event_timestamp"),
        *[f"{col}_{w}d" for w in WINDOWS for col in COUNTS],
        F.col("spend_30d").cast("double").alias("spend_30d"),
        F.when(has_impressions, smoothed(F.col("clicks_30d"), F.col("impressions_30d"), F.col("prior_ctr"),
                                         settings.rate_strength)).cast("double").alias("ctr_30d"),
        smoothed(F.col("purchases_30d"), F.col("clicks_30d"), F.col("prior_cvr"),
                 settings.rate_strength).cast("double").alias("cvr_30d"),
        days_since(F.col("last_event"), F.col("snap_ts")).alias("days_since_last_event"),
        days_since(F.col("last_positive"), F.col("snap_ts")).alias("days_since_last_positive"),
        days_since(F.col("last_purchase"), F.col("snap_ts")).alias("days_since_last_purchase"),
        F.when(F.col("purchases_30d") >= high_value, "high_value")
        .when((F.col("purchases_30d") > 0) | (F.col("carts_30d") > 0)
              | (F.col("clicks_30d") >= potential), "potential")
        .otherwise("normal").alias("segment"),
    )

    positives = events.where(F.col("event_type").isin(*POSITIVE_TYPES))
    # price level: geometric mean price of what the user engaged with (30 days)
    priced = positives.where(F.col("price") > 0).groupBy("user_id", "day").agg(
        F.sum(F.log("price")).alias("log_price_sum"), F.count("*").alias("priced"))
    price = fan_out(priced, snaps, clock.lookback_days).groupBy("user_id", "snap_day").agg(
        F.exp(F.sum("log_price_sum") / F.sum("priced")).alias("price_level"))
    out = out.join(price, ["user_id", "snap_day"], "left")

    # decayed category and brand preferences; a longer look-back (a sparse log) stretches the
    # half-life with it, so months-old tastes are not decayed to nothing
    weight = event_weight()
    half_life = settings.preference_half_life_days * max(clock.lookback_days, 30) / 30  # 7 days at 30
    if items is not None:
        attrs = items.select("item_id", "category", "brand")
        tagged = positives.join(F.broadcast(attrs), "item_id", "left")
        for value, prefix in (("category", "category"), ("brand", "brand")):
            daily = tagged.where(F.col(value).isNotNull()).groupBy("user_id", value, "day").agg(
                F.sum(weight).alias("w"))
            scored = fan_out(daily, snaps, clock.lookback_days).groupBy("user_id", "snap_day", value).agg(
                F.sum(F.col("w") * decay(F.col("age_days"), half_life)).alias("pref"))
            out = out.join(_top_k(scored, "user_id", value, settings.top_k_preferences, prefix),
                           ["user_id", "snap_day"], "left")
    else:
        for prefix in ("category", "brand"):
            out = (out.withColumn(f"top_{prefix}s", F.lit(None).cast("array<string>"))
                   .withColumn(f"top_{prefix}_weights", F.lit(None).cast("array<float>")))

    # the most recent distinct items engaged with (and bought) before each snapshot
    out = out.join(_latest_items(positives, snaps, settings.recent_items, "recent_items", clock.lookback_days),
                   ["user_id", "snap_day"], "left")
    bought = positives.where(F.col("event_type") == "purchase")
    out = out.join(_latest_items(bought, snaps, settings.bought_items, "bought_items", clock.lookback_days),
                   ["user_id", "snap_day"], "left")
    return out.drop("snap_day")


def _latest_items(events, snaps, n: int, name: str, lookback_days: int = LOOKBACK_DAYS):
    """Per (user, snapshot): the `n` most recent distinct items in `events` before the
    snapshot (within the look-back), newest first."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    recent = events.select("user_id", "item_id", "event_time", "day").join(
        F.broadcast(snaps), (F.col("day") < F.col("snap_day"))
        & (F.col("day") >= F.date_sub(F.col("snap_day"), max(lookback_days, LOOKBACK_DAYS))))
    recent = recent.groupBy("user_id", "snap_day", "item_id").agg(F.max("event_time").alias("t"))
    w = Window.partitionBy("user_id", "snap_day").orderBy(F.desc("t"), F.asc("item_id"))
    return (recent.withColumn("rank", F.row_number().over(w)).where(F.col("rank") <= n)
            .groupBy("user_id", "snap_day")
            .agg(F.sort_array(F.collect_list(F.struct("rank", "item_id"))).alias("_r"))
            .select("user_id", "snap_day", F.col("_r.item_id").alias(name)))


def user_profile(users):
    """The users catalogue as a feature table, stamped with each version's time."""
    from pyspark.sql import functions as F

    if users is None:
        return None
    epoch = F.to_timestamp(F.lit("1970-01-01 00:00:00"))
    stamp = F.coalesce(F.col("updated_at"), F.col("signup_at"), epoch)
    return users.select(
        "user_id", stamp.alias("event_timestamp"),
        F.coalesce("age_band", F.lit("unknown")).alias("age_band"),
        F.coalesce("gender", F.lit("u")).alias("gender"),
        F.coalesce("region", F.lit("unknown")).alias("region"),
        F.coalesce("member_level", F.lit(0)).cast("long").alias("member_level"),
        F.col("signup_at"),
    )
