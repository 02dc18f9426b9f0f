"""One feature service per model version: what each model reads, in training and serving."""

from context_views import context
from feast import FeatureService
from item_views import item_attributes, item_stats, merchant_stats
from relation_views import als_user_factors
from user_views import user_behaviour, user_preferences, user_profile, user_realtime

two_tower_v1 = FeatureService(
    name="two_tower_v1",
    features=[
        user_behaviour[["clicks_30d", "purchases_30d", "ctr_30d", "cvr_30d", "price_level", "segment"]],
        user_preferences[["top_categorys", "top_brands", "recent_items"]],
        user_profile[["age_band", "gender", "region", "member_level"]],
        item_attributes[["category", "top_category", "brand", "price", "title", "tags"]],
        item_stats[["ctr_30d", "heat", "age_days"]],
    ],
    description="TFRS two-tower retrieval: user tower and item tower inputs",
)

ranker_v1 = FeatureService(
    name="ranker_v1",
    features=[
        user_behaviour,
        user_preferences,
        user_profile,
        user_realtime,
        als_user_factors,
        item_stats,
        item_attributes,
        merchant_stats,
        context,
    ],
    description="MMoE teacher (fine ranking): every user, item, merchant and context feature",
)

coarse_v1 = FeatureService(
    name="coarse_v1",
    features=[
        user_behaviour[["ctr_30d", "cvr_30d", "clicks_7d", "purchases_30d", "price_level", "segment"]],
        # the user's top categories / brands against the candidate's: the student's strongest
        # fields (without them its test AUC on demo falls from 0.756 to 0.669)
        user_preferences[["top_categorys", "top_category_weights", "top_brands", "top_brand_weights"]],
        item_stats[["ctr_30d", "cvr_30d", "heat", "age_days", "clicks_7d"]],
        item_attributes[["top_category", "category", "brand", "price", "rating"]],
        context[["hour_of_day", "device_idx", "price_vs_user"]],
    ],
    description="FM student (coarse ranking): a cheap subset, scored in NumPy",
)
