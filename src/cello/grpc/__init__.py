"""gRPC: ``app.grpc_service(servicer)`` and ``app.run(grpc_port=...)`` serve services compiled from ``.proto`` files
(``cello grpc-compile``) through ``grpc.aio`` in every worker, with the health and reflection services. Needs the
``grpc`` extra (grpcio, grpcio-tools, grpcio-health-checking, grpcio-reflection, grpcio-status)."""

from .auth import current_user_of_call as current_user
from .server import GrpcServer

__all__ = ["GrpcServer", "current_user"]
