"""Labelled ranking samples: the entity rows (user, item, time, context) plus labels that
training joins point-in-time with Feast features.

With impressions in the log: one row per (user, item, session) impression — its first
impression — labelled `label_click` (clicked in that session) and `label_purchase` (bought
in that session). Without impressions (click- or rating-only logs): every positive
(click / cart / purchase, first per user-item-session) is a row with label_click = 1, and
`negatives_per_positive` items drawn in proportion to their popularity in the window
(what a storefront would have shown) that the user did not engage with that day become
rows with label 0 at the same time and context (accidental hits — items the user did engage
with in that session — are removed). Purchase labels keep their meaning in
both cases; `sampled` says which rows are sampled negatives.
"""

from __future__ import annotations

from dataclasses import dataclass

from spark_jobs.io import POSITIVE_TYPES, Clock

CONTEXT = ("session_id", "device", "region", "scene", "position", "price", "merchant_id")


@dataclass(frozen=True)
class SampleSettings:
    lookback_days: int | None = None  # None: the clock's (derived from the log)
    negatives_per_positive: int = 4
    seed: int = 0


def labelled_samples(events, clock: Clock, items=None, settings: SampleSettings = SampleSettings()):
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if items is not None:  # merchant of each item, for merchant features, when the log lacks it
        events = events.join(F.broadcast(items.select("item_id", F.col("merchant_id").alias("_m"))),
                             "item_id", "left").withColumn(
            "merchant_id", F.coalesce(F.col("merchant_id"), F.col("_m"))).drop("_m")
    lookback = settings.lookback_days or clock.lookback_days
    ev = events.where((F.col("day") < F.lit(clock.last)) & (F.col("day") >= F.date_sub(F.lit(clock.last), lookback)))
    session = F.coalesce(F.col("session_id"), F.concat_ws("|", "user_id", F.col("day").cast("string")))
    ev = ev.withColumn("basket", session)
    t = F.col("event_type")
    labels = ev.groupBy("user_id", "item_id", "basket").agg(
        F.max(F.when(t.isin(*POSITIVE_TYPES), 1).otherwise(0)).cast("long").alias("label_click"),
        F.max(F.when(t == "purchase", 1).otherwise(0)).cast("long").alias("label_purchase"))
    has_impressions = ev.where(t == "impression").limit(1).count() > 0
    first = Window.partitionBy("user_id", "item_id", "basket").orderBy("event_time", "event_id")
    base = ev.where(t == "impression") if has_impressions else ev.where(t.isin(*POSITIVE_TYPES))
    rows = (base.withColumn("k", F.row_number().over(first)).where(F.col("k") == 1)
            .select("user_id", "item_id", "basket", F.col("event_time").alias("event_timestamp"), *CONTEXT))
    rows = rows.join(labels, ["user_id", "item_id", "basket"], "left").fillna(
        0, subset=["label_click", "label_purchase"]).withColumn("sampled", F.lit(False))
    if has_impressions:
        return rows.drop("basket")

    # sampled negatives: popularity-proportional draws by picking random positive events
    pool = ev.where(t.isin(*POSITIVE_TYPES)).select("item_id", "merchant_id", "price").withColumn(
        "slot", F.row_number().over(Window.orderBy("item_id")) - 1)
    n_pool = pool.count()
    neg = (rows.select("user_id", "item_id", "basket", "event_timestamp", *CONTEXT)
           .withColumn("draw", F.explode(F.sequence(F.lit(1), F.lit(settings.negatives_per_positive))))
           .withColumn("slot", F.floor(F.rand(settings.seed) * n_pool).cast("long"))
           .drop("item_id", "merchant_id", "price")  # the drawn item brings its own
           .join(pool, "slot").drop("slot", "draw"))
    engaged = labels.select("user_id", "item_id", "basket")
    neg = (neg.join(engaged, ["user_id", "item_id", "basket"], "left_anti")
           .dropDuplicates(["user_id", "item_id", "basket"])
           .withColumn("label_click", F.lit(0).cast("long")).withColumn("label_purchase", F.lit(0).cast("long"))
           .withColumn("sampled", F.lit(True)))
    return rows.unionByName(neg).drop("basket")
