"""The serving API's generated stubs, (re)generated on first import when missing or stale."""

from serving.proto.build import build

build()

from serving.proto.vitrine.v1 import recommender_pb2 as pb  # noqa: E402
from serving.proto.vitrine.v1 import recommender_pb2_grpc as pb_grpc  # noqa: E402

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Recommender"].full_name

__all__ = ["SERVICE_NAME", "pb", "pb_grpc"]
