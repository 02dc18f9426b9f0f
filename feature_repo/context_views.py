"""Context features computed at request time (on-demand): hour, weekday, device, and the
candidate's price relative to the user's price level. The same function serves training
(request columns come from the entity rows) and serving (from the request)."""

import pandas as pd
from feast import Field, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64
from user_views import user_behaviour

request_context = RequestSource(
    name="request_context",
    schema=[
        Field(name="request_unix_s", dtype=Int64, description="request (or label) time, unix seconds"),
        Field(name="device_code", dtype=Int64, description="index in vitrine.data.schemas.DEVICES"),
        Field(name="candidate_price", dtype=Float64, description="the candidate item's price"),
    ],
)


@on_demand_feature_view(
    sources=[user_behaviour, request_context],
    schema=[
        Field(name="hour_of_day", dtype=Int64),
        Field(name="day_of_week", dtype=Int64),
        Field(name="is_weekend", dtype=Int64),
        Field(name="device_idx", dtype=Int64),
        Field(name="price_vs_user", dtype=Float64),
    ],
    mode="pandas",
    # field tags as view tags "<field>.<tag>": Feast's on-demand inference compares fields with
    # their tags, so tags on these fields would fail `feast apply`
    tags={"hour_of_day.encoding": "categorical", "day_of_week.encoding": "categorical",
          "device_idx.encoding": "categorical"},
)
def context(inputs: pd.DataFrame) -> pd.DataFrame:
    when = pd.to_datetime(inputs["request_unix_s"].astype("int64"), unit="s", utc=True)
    out = pd.DataFrame(index=inputs.index)
    out["hour_of_day"] = when.dt.hour.astype("int64")
    out["day_of_week"] = when.dt.dayofweek.astype("int64")
    out["is_weekend"] = (out["day_of_week"] >= 5).astype("int64")
    out["device_idx"] = inputs["device_code"].fillna(-1).astype("int64")
    level = pd.to_numeric(inputs["price_level"], errors="coerce")
    out["price_vs_user"] = (pd.to_numeric(inputs["candidate_price"], errors="coerce") / level).astype("float64")
    return out
