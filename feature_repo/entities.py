"""The entities every feature hangs off. Ids are strings everywhere in Vitrine."""

from feast import Entity, ValueType

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING,
              description="A shopper (registered or guest)")
item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING,
              description="A listed product")
merchant = Entity(name="merchant", join_keys=["merchant_id"], value_type=ValueType.STRING,
                  description="A seller on the platform")
