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

Our own exposures are impressions too: where the exposure log has answers in the window,
each (answer, item) shown is a row at the time it was served, at its position, labelled by
the events that name that answer's `request_id` for that item (a click, cart or purchase on
what we showed). Those events then label the exposure only: they are not rows of their own,
and an impression a client reported for an item of one of our answers is the same impression
(dropped from the log's rows).
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


def labelled_samples(events, clock: Clock, items=None, settings: SampleSettings = SampleSettings(),
                     exposures=None):
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if items is not None:  # merchant of each item, for merchant features, when the log lacks it
        events = events.join(F.broadcast(items.select("item_id", F.col("merchant_id").alias("_m"))),
                             "item_id", "left").withColumn(
            "merchant_id", F.coalesce(F.col("merchant_id"), F.col("_m"))).drop("_m")
    lookback = settings.lookback_days or clock.lookback_days
    in_window = (F.col("day") < F.lit(clock.last)) & (F.col("day") >= F.date_sub(F.lit(clock.last), lookback))
    ev = events.where(in_window)
    shown = None
    if exposures is not None and "request_id" in ev.columns:  # (logs written before events had one: no join)
        known = F.col("request_id").isNotNull() & F.col("user_id").isNotNull() & F.col("item_id").isNotNull()
        shown = (exposures.where(in_window & (F.col("served_at") <= F.lit(clock.as_of)) & known)
                 .select("request_id", "user_id", "item_id", "served_at", "position"))
        answered = shown.select("request_id", "item_id").distinct()
        on_answers = ev.join(answered, ["request_id", "item_id"], "left_semi")
        ev = ev.join(answered, ["request_id", "item_id"], "left_anti")  # a null request_id never matches
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
    exposed = None if shown is None else _exposure_rows(shown, on_answers, ev.schema, items)
    if has_impressions:
        rows = rows.drop("basket")
        return rows if exposed is None else rows.unionByName(exposed)

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
    rows = rows.unionByName(neg).drop("basket")
    return rows if exposed is None else rows.unionByName(exposed)


def _exposure_rows(shown, on_answers, schema, items=None):
    """One row per (answer, item) shown, at the time it was served and its position, labelled
    by the events naming that answer; the item's merchant from the catalogue; context the
    exposure does not know is null."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    t = F.col("event_type")
    labels = on_answers.groupBy("request_id", "item_id").agg(
        F.max(F.when(t.isin(*POSITIVE_TYPES), 1).otherwise(0)).cast("long").alias("label_click"),
        F.max(F.when(t == "purchase", 1).otherwise(0)).cast("long").alias("label_purchase"))
    first = Window.partitionBy("request_id", "item_id").orderBy("served_at")
    rows = (shown.withColumn("k", F.row_number().over(first)).where(F.col("k") == 1)
            .join(labels, ["request_id", "item_id"], "left").fillna(0, subset=["label_click", "label_purchase"]))
    if items is not None:
        rows = rows.join(F.broadcast(items.select("item_id", "merchant_id")), "item_id", "left")
    else:
        rows = rows.withColumn("merchant_id", F.lit(None))
    context = [F.col(c).cast(schema[c].dataType).alias(c) if c in ("position", "merchant_id")
               else F.lit(None).cast(schema[c].dataType).alias(c) for c in CONTEXT]
    return rows.select("user_id", "item_id", F.col("served_at").alias("event_timestamp"), *context,
                       "label_click", "label_purchase", F.lit(False).alias("sampled"))
