"""Recall relations as features: top-K neighbour lists per item and ALS factors, so serving
reads them through Feast like every other feature."""

from common import SNAPSHOT_TTL, table_path
from entities import item, user
from feast import FeatureView, Field, FileSource
from feast.types import Array, Float32, String

# relation tables are recomputed as a whole; the latest one is valid until replaced
RELATION_TTL = SNAPSHOT_TTL * 30


def _view(name: str, entity, fields: list[Field], job: str) -> FeatureView:
    return FeatureView(
        name=name, entities=[entity], ttl=RELATION_TTL, schema=fields,
        source=FileSource(name=f"{name}_source", path=table_path(name), timestamp_field="event_timestamp"),
        tags={"owner": "vitrine", "job": job},
    )


item_cf = _view("item_cf", item, [Field(name="cf_neighbours", dtype=Array(String)),
                                  Field(name="cf_scores", dtype=Array(Float32))],
                "spark_jobs.relations.item_cf")
content_neighbours = _view("content_neighbours", item,
                           [Field(name="content_neighbours", dtype=Array(String)),
                            Field(name="content_scores", dtype=Array(Float32))],
                           "spark_jobs.relations.content_neighbours")
als_user_factors = _view("als_user_factors", user, [Field(name="user_als_factors", dtype=Array(Float32))],
                         "spark_jobs.relations.als_factors")
als_item_factors = _view("als_item_factors", item, [Field(name="item_als_factors", dtype=Array(Float32))],
                         "spark_jobs.relations.als_factors")
