"""User features: daily behaviour snapshots (Spark), the profile (catalogue versions) and
real-time counters pushed by the event collector."""

from common import REALTIME_TTL, SNAPSHOT_TTL, VERSIONED_TTL, table_path
from entities import user
from feast import FeatureView, Field, FileSource, PushSource
from feast.types import Array, Float32, Float64, Int64, String, UnixTimestamp

WINDOW_COUNTS = [Field(name=f"{c}_{w}d", dtype=Int64) for w in (1, 7, 30)
                 for c in ("impressions", "clicks", "carts", "purchases")]

user_behaviour_source = FileSource(name="user_behaviour_source", path=table_path("user_behaviour"),
                                   timestamp_field="event_timestamp")
user_behaviour = FeatureView(
    name="user_behaviour",
    entities=[user],
    ttl=SNAPSHOT_TTL,
    schema=[
        *WINDOW_COUNTS,
        Field(name="spend_30d", dtype=Float64),
        Field(name="ctr_30d", dtype=Float64, description="clicks/impressions, Beta prior (20)"),
        Field(name="cvr_30d", dtype=Float64, description="purchases/clicks, Beta prior (20)"),
        Field(name="days_since_last_event", dtype=Float64),
        Field(name="days_since_last_positive", dtype=Float64),
        Field(name="days_since_last_purchase", dtype=Float64),
        Field(name="segment", dtype=String, description="high_value | potential | normal"),
        Field(name="price_level", dtype=Float64, description="geometric mean price engaged with"),
    ],
    source=user_behaviour_source,
    # models get a 0/1 "the user has a snapshot" input from this field (vitrine/featurestore/contract.py)
    tags={"owner": "vitrine", "job": "spark_jobs.user_features.user_behaviour", "known_flag": "segment"},
)

# the list-valued part of the same snapshots (its own table keeps historical joins of the
# scalar view fast: Feast's file store hashes every column of a source)
user_preferences = FeatureView(
    name="user_preferences",
    entities=[user],
    ttl=SNAPSHOT_TTL,
    schema=[
        # a bag: the user's values with their weights, in the vocabulary of the candidate's field
        # it `matches` (rankers also get the weight of the candidate's own value)
        Field(name="top_categorys", dtype=Array(String), description="decayed preference, top 3",
              tags={"encoding": "bag", "weights": "top_category_weights", "matches": "category"}),
        Field(name="top_category_weights", dtype=Array(Float32)),
        Field(name="top_brands", dtype=Array(String),
              tags={"encoding": "bag", "weights": "top_brand_weights", "matches": "brand"}),
        Field(name="top_brand_weights", dtype=Array(Float32)),
        Field(name="recent_items", dtype=Array(String), description="last 20 engaged items",
              tags={"encoding": "item_ids"}),
        Field(name="bought_items", dtype=Array(String), description="last 50 purchased items (30 days)",
              tags={"encoding": "item_ids"}),
    ],
    source=FileSource(name="user_preferences_source", path=table_path("user_preferences"),
                      timestamp_field="event_timestamp"),
    tags={"owner": "vitrine", "job": "spark_jobs.user_features.user_behaviour", "known_flag": "top_categorys"},
)

user_profile_source = FileSource(name="user_profile_source", path=table_path("user_profile"),
                                 timestamp_field="event_timestamp")
user_profile = FeatureView(
    name="user_profile",
    entities=[user],
    ttl=VERSIONED_TTL,
    schema=[
        Field(name="age_band", dtype=String),
        Field(name="gender", dtype=String),
        Field(name="region", dtype=String),
        Field(name="member_level", dtype=Int64, tags={"encoding": "categorical"}),
        Field(name="signup_at", dtype=UnixTimestamp),
    ],
    source=user_profile_source,
    tags={"owner": "vitrine", "job": "spark_jobs.user_features.user_profile"},
)

# real time: the collector pushes these on every accepted event (online only); the batch
# source is the (initially empty) table the same rows can be logged to
user_realtime_batch = FileSource(name="user_realtime_batch", path=table_path("user_realtime"),
                                 timestamp_field="event_timestamp")
user_realtime_push = PushSource(name="user_realtime_push", batch_source=user_realtime_batch)
user_realtime = FeatureView(
    name="user_realtime",
    entities=[user],
    ttl=REALTIME_TTL,
    schema=[
        Field(name="rt_impressions", dtype=Int64, description="since the last daily snapshot"),
        Field(name="rt_clicks", dtype=Int64),
        Field(name="rt_carts", dtype=Int64),
        Field(name="rt_purchases", dtype=Int64),
        Field(name="rt_last_event_at", dtype=UnixTimestamp),
        Field(name="rt_recent_items", dtype=Array(String), description="newest first"),
        Field(name="rt_bought_items", dtype=Array(String)),
    ],
    source=user_realtime_push,
    online=True,
    tags={"owner": "vitrine", "writer": "collector"},
)
