"""One feature service per model version: what each model reads, in training and serving.

A service is a model's contract (vitrine/featurestore/contract.py): every model takes its
inputs from its service's fields, in this order, encoded as the fields' types and tags say.
Fields are listed one by one, so a field added to a view reaches no existing version: add it
to a new version (`ranker_v2 = FeatureService(...)`), `vitrine feast apply`, and
`vitrine train ranking --service ranker_v2` (docs/features.md walks through it).
"""

from context_views import context
from feast import FeatureService
from item_views import item_attributes, item_stats, merchant_stats
from relation_views import als_user_factors
from user_views import user_behaviour, user_preferences, user_profile

WINDOWS = [f"{c}_{w}d" for w in (1, 7, 30) for c in ("impressions", "clicks", "carts", "purchases")]

TWO_TOWER_V1 = [
    user_behaviour[["clicks_30d", "purchases_30d", "ctr_30d", "cvr_30d", "price_level", "segment"]],
    user_preferences[["top_categorys", "recent_items"]],
    user_profile[["age_band", "gender", "region"]],
    item_attributes[["category", "top_category", "brand", "price", "title"]],
    item_stats[["ctr_30d", "heat", "age_days"]],
]
two_tower_v1 = FeatureService(
    name="two_tower_v1",
    features=TWO_TOWER_V1,
    description="TFRS two-tower retrieval: user tower and item tower inputs",
)

# not model inputs: `user_realtime` (its offline table only logs what the collector pushed, so
# training rows would see nulls where serving sees values) and `als_user_factors` (one latest
# snapshot, never valid at a training row's time)
RANKER_V1 = [  # a new version can extend this: `features=[*RANKER_V1, my_view[["my_field"]]]`
    user_behaviour[[*WINDOWS, "spend_30d", "ctr_30d", "cvr_30d", "days_since_last_event",
                    "days_since_last_positive", "days_since_last_purchase", "segment", "price_level"]],
    user_preferences[["top_categorys", "top_category_weights", "top_brands", "top_brand_weights"]],
    user_profile[["age_band", "gender", "region", "member_level"]],
    item_stats[[*WINDOWS, "revenue_30d", "ctr_30d", "cvr_30d", "heat", "age_days", "days_since_last_event"]],
    item_attributes[["category", "top_category", "brand", "merchant_id", "price", "rating", "is_online"]],
    merchant_stats[["impressions_30d", "clicks_30d", "purchases_30d", "revenue_30d", "ctr_30d", "cvr_30d",
                    "listed_items", "merchant_rating"]],
    context[["hour_of_day", "day_of_week", "device_idx", "is_weekend", "price_vs_user"]],
]
ranker_v1 = FeatureService(
    name="ranker_v1",
    features=RANKER_V1,
    description="MMoE teacher (fine ranking): every user, item, merchant and context feature",
)

coarse_v1 = FeatureService(
    name="coarse_v1",
    features=[
        user_behaviour[["segment", "ctr_30d", "cvr_30d", "clicks_7d", "purchases_30d", "price_level"]],
        # the user's top categories / brands against the candidate's: the student's strongest
        # fields (without them its test AUC on demo falls from 0.756 to 0.669)
        user_preferences[["top_categorys", "top_category_weights", "top_brands", "top_brand_weights"]],
        item_stats[["ctr_30d", "cvr_30d", "heat", "age_days", "clicks_7d"]],
        item_attributes[["top_category", "category", "brand", "price", "rating"]],
        context[["hour_of_day", "device_idx", "price_vs_user"]],
    ],
    description="FM student (coarse ranking): a cheap subset, scored in NumPy",
)

# what recall reads about a user (the routes and the user tower), joined point in time onto the
# ranking positives when the rankers' negatives come from recall (training/ranking/negatives.py)
recall_v1 = FeatureService(
    name="recall_v1",
    features=[user_behaviour, user_preferences, user_profile, als_user_factors],
    description="Recall's user state: routes and the user tower, for recall-conditioned ranking rows",
)
