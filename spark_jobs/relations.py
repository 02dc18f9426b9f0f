"""Relation tables for recall, each a top-K list per key: item-CF neighbours (session
co-occurrence), ALS factors (`pyspark.ml`, implicit feedback) and content neighbours
(TF-IDF over title and tags + random-projection LSH, `pyspark.ml`)."""

from __future__ import annotations

from dataclasses import dataclass

from spark_jobs.io import EVENT_WEIGHTS, POSITIVE_TYPES, Clock


@dataclass(frozen=True)
class RelationSettings:
    lookback_days: int = 30
    top_k: int = 50
    max_items_per_session: int = 30  # caps the quadratic pair count of very long sessions
    min_co_count: int = 1
    popularity_penalty: float = 0.5  # score = co / (n_i^(1-a) * n_j^a): a > 0.5 pushes popular j down
    als_rank: int = 32
    als_iterations: int = 8
    als_reg: float = 0.05
    als_alpha: float = 10.0
    content_top_k: int = 20
    content_bucket_length: float = 0.6
    content_hash_tables: int = 4
    content_max_distance: float = 0.9  # euclidean on unit vectors: cosine >= 1 - d^2 / 2


def _window(events, clock: Clock, days: int):
    from pyspark.sql import functions as F

    return events.where((F.col("day") < F.lit(clock.last))
                        & (F.col("day") >= F.date_sub(F.lit(clock.last), days)))


def _top_k_lists(pairs, key: str, other: str, score: str, k: int, names: tuple[str, str]):
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    w = Window.partitionBy(key).orderBy(F.desc(score), F.asc(other))
    ranked = pairs.withColumn("rank", F.row_number().over(w)).where(F.col("rank") <= k)
    return ranked.groupBy(key).agg(F.sort_array(F.collect_list(F.struct("rank", other, score))).alias("_l")) \
        .select(key, F.col(f"_l.{other}").alias(names[0]), F.col(f"_l.{score}").cast("array<float>")
                .alias(names[1]))


def item_cf(events, clock: Clock, settings: RelationSettings = RelationSettings()):
    """Items engaged with in the same session (or the same user-day when sessions are absent)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    pos = _window(events, clock, settings.lookback_days).where(F.col("event_type").isin(*POSITIVE_TYPES))
    basket = F.coalesce(F.col("session_id"), F.concat_ws("|", "user_id", F.col("day").cast("string")))
    per = pos.select(basket.alias("basket"), "item_id", "event_time").groupBy("basket", "item_id").agg(
        F.min("event_time").alias("t"))
    w = Window.partitionBy("basket").orderBy("t", "item_id")
    per = per.withColumn("n", F.row_number().over(w)).where(F.col("n") <= settings.max_items_per_session)
    counts = per.groupBy("item_id").agg(F.countDistinct("basket").alias("cnt"))
    a, b = per.alias("a"), per.alias("b")
    pairs = (a.join(b, (F.col("a.basket") == F.col("b.basket")) & (F.col("a.item_id") != F.col("b.item_id")))
             .groupBy(F.col("a.item_id").alias("item_id"), F.col("b.item_id").alias("neighbour"))
             .agg(F.count("*").alias("co"))
             .where(F.col("co") >= settings.min_co_count))
    alpha = settings.popularity_penalty
    ci, cj = counts.alias("ci"), counts.alias("cj")
    scored = (pairs.join(ci, pairs.item_id == F.col("ci.item_id")).join(cj, pairs.neighbour == F.col("cj.item_id"))
              .select(pairs.item_id, pairs.neighbour,
                      (F.col("co") / (F.pow(F.col("ci.cnt"), 1 - alpha) * F.pow(F.col("cj.cnt"), alpha)))
                      .alias("score")))
    return _stamp(_top_k_lists(scored, "item_id", "neighbour", "score", settings.top_k,
                               ("cf_neighbours", "cf_scores")), clock)


def als_factors(events, clock: Clock, spark, settings: RelationSettings = RelationSettings(), seed: int = 0):
    """Implicit-feedback ALS over positive events → (user factors, item factors)."""
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import functions as F

    pos = _window(events, clock, settings.lookback_days).where(F.col("event_type").isin(*POSITIVE_TYPES))
    weight = F.lit(0.0)
    for name, w in EVENT_WEIGHTS.items():
        weight = F.when(F.col("event_type") == name, F.lit(w)).otherwise(weight)
    ratings = pos.groupBy("user_id", "item_id").agg(F.sum(weight).alias("rating"))
    users = ratings.select("user_id").distinct().withColumn(
        "u", F.row_number().over(_ordered("user_id")) - 1)
    items = ratings.select("item_id").distinct().withColumn(
        "i", F.row_number().over(_ordered("item_id")) - 1)
    data = ratings.join(users, "user_id").join(items, "item_id").select(
        F.col("u").cast("int"), F.col("i").cast("int"), F.col("rating").cast("float")).cache()
    if data.count() == 0:
        return None, None
    model = ALS(rank=settings.als_rank, maxIter=settings.als_iterations, regParam=settings.als_reg,
                alpha=settings.als_alpha, implicitPrefs=True, userCol="u", itemCol="i", ratingCol="rating",
                coldStartStrategy="drop", seed=seed, nonnegative=False).fit(data)
    uf = model.userFactors.join(users, model.userFactors.id == users.u).select(
        "user_id", F.col("features").cast("array<float>").alias("user_als_factors"))
    itf = model.itemFactors.join(items, model.itemFactors.id == items.i).select(
        "item_id", F.col("features").cast("array<float>").alias("item_als_factors"))
    data.unpersist()
    return _stamp(uf, clock), _stamp(itf, clock)


def _stamp(df, clock: Clock):
    """Relation tables are valid from the snapshot they were computed for."""
    from pyspark.sql import functions as F

    return df.withColumn("event_timestamp", F.to_timestamp(F.lit(clock.last.isoformat())))


def _ordered(col: str):
    from pyspark.sql import Window

    return Window.orderBy(col)


def content_neighbours(items, clock: Clock, settings: RelationSettings = RelationSettings(), seed: int = 0):
    """Similar items by title + tags: TF-IDF → L2 norm → BucketedRandomProjectionLSH self-join."""
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import (
        IDF,
        BucketedRandomProjectionLSH,
        CountVectorizer,
        Normalizer,
        RegexTokenizer,
    )
    from pyspark.sql import functions as F

    if items is None:
        return None
    text = items.select("item_id", F.concat_ws(" ", F.coalesce("title", F.lit("")),
                                               F.regexp_replace(F.coalesce("tags", F.lit("")), r"\|", " "),
                                               F.coalesce("brand", F.lit("")),
                                               F.coalesce("category", F.lit(""))).alias("text"))
    pipeline = Pipeline(stages=[
        RegexTokenizer(inputCol="text", outputCol="tokens", pattern=r"[^\w]+", minTokenLength=2),
        CountVectorizer(inputCol="tokens", outputCol="tf", minDF=2.0),
        IDF(inputCol="tf", outputCol="tfidf"),
        Normalizer(inputCol="tfidf", outputCol="vec", p=2.0),
        BucketedRandomProjectionLSH(inputCol="vec", outputCol="hashes", seed=seed,
                                    bucketLength=settings.content_bucket_length,
                                    numHashTables=settings.content_hash_tables),
    ])
    model = pipeline.fit(text)
    vectors = model.transform(text).cache()
    lsh = model.stages[-1]
    pairs = lsh.approxSimilarityJoin(vectors, vectors, settings.content_max_distance, distCol="dist")
    pairs = pairs.where(F.col("datasetA.item_id") != F.col("datasetB.item_id")).select(
        F.col("datasetA.item_id").alias("item_id"), F.col("datasetB.item_id").alias("neighbour"),
        (F.lit(1.0) - F.col("dist") * F.col("dist") / 2).alias("score"))
    out = _top_k_lists(pairs, "item_id", "neighbour", "score", settings.content_top_k,
                       ("content_neighbours", "content_scores"))
    vectors.unpersist()
    return _stamp(out, clock)
