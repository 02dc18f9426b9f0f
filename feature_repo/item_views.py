"""Item and merchant features: daily stats snapshots, point-in-time catalogue attributes,
and the recall relation lists (item-CF and content neighbours)."""

from common import SNAPSHOT_TTL, VERSIONED_TTL, table_path
from entities import item, merchant
from feast import FeatureView, Field, FileSource
from feast.types import Bool, Float64, Int64, String, UnixTimestamp

item_stats_source = FileSource(name="item_stats_source", path=table_path("item_stats"),
                               timestamp_field="event_timestamp")
item_stats = FeatureView(
    name="item_stats",
    entities=[item],
    ttl=SNAPSHOT_TTL,
    schema=[
        *[Field(name=f"{c}_{w}d", dtype=Int64) for w in (1, 7, 30)
          for c in ("impressions", "clicks", "carts", "purchases")],
        Field(name="revenue_30d", dtype=Float64),
        Field(name="ctr_30d", dtype=Float64, description="Beta prior of 100 impressions"),
        Field(name="cvr_30d", dtype=Float64, description="Beta prior of 50 clicks"),
        Field(name="heat", dtype=Float64, description="weighted events, half-life 2 days"),
        Field(name="age_days", dtype=Float64, description="days since listed"),
        Field(name="days_since_last_event", dtype=Float64),
    ],
    source=item_stats_source,
    tags={"owner": "vitrine", "job": "spark_jobs.item_features.item_stats", "known_flag": "heat"},
)

item_attributes_source = FileSource(name="item_attributes_source", path=table_path("item_attributes"),
                                    timestamp_field="event_timestamp")
item_attributes = FeatureView(
    name="item_attributes",
    entities=[item],
    ttl=VERSIONED_TTL,
    schema=[
        Field(name="merchant_id", dtype=String),
        Field(name="category", dtype=String),
        Field(name="top_category", dtype=String),
        Field(name="brand", dtype=String),
        Field(name="price", dtype=Float64),
        Field(name="rating", dtype=Float64),
        Field(name="title", dtype=String, tags={"encoding": "text"}),
        Field(name="tags", dtype=String, tags={"encoding": "text"}),
        Field(name="is_online", dtype=Bool),
        Field(name="created_at", dtype=UnixTimestamp),
    ],
    source=item_attributes_source,
    tags={"owner": "vitrine", "job": "spark_jobs.item_features.item_attributes"},
)

merchant_stats_source = FileSource(name="merchant_stats_source", path=table_path("merchant_stats"),
                                   timestamp_field="event_timestamp")
merchant_stats = FeatureView(
    name="merchant_stats",
    entities=[merchant],
    ttl=SNAPSHOT_TTL,
    schema=[
        Field(name="impressions_30d", dtype=Int64),
        Field(name="clicks_30d", dtype=Int64),
        Field(name="purchases_30d", dtype=Int64),
        Field(name="revenue_30d", dtype=Float64),
        Field(name="ctr_30d", dtype=Float64),
        Field(name="cvr_30d", dtype=Float64),
        Field(name="listed_items", dtype=Int64),
        Field(name="merchant_rating", dtype=Float64),
    ],
    source=merchant_stats_source,
    tags={"owner": "vitrine", "job": "spark_jobs.item_features.merchant_stats", "known_flag": "ctr_30d"},
)
