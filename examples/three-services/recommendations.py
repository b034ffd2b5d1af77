"""The private `recommendations` service: a gRPC server, as Cloud Run runs one. It listens
for cleartext HTTP/2 (h2c) on $PORT; the front door ends TLS and checks the caller's token
and IAM first, and hands gRPC calls on over HTTP/2 even though this service is not declared
HTTP/2 end to end (as Google's run/grpc-ping is not). Its one method,
/shop.Recommendations/ForUser, takes and answers JSON (raw bytes on the wire: no protobuf
to generate for an example), naming the caller the front door let in."""

import base64
import json
import os
from concurrent import futures

import grpc


def caller(context):
    """The email of the token the front door checked (its claims are read, not verified
    again: the front door did that)."""
    metadata = dict(context.invocation_metadata())
    token = metadata.get("authorization", "").removeprefix("Bearer ").strip()
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    return claims.get("email")


def for_user(request, context):
    asked = json.loads(request or b"{}")
    return json.dumps({
        "service": "recommendations",
        "caller": caller(context),
        "user": asked.get("user"),
        "items": ["wool socks", "a thermos"],
    }).encode()


if __name__ == "__main__":
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), handlers=[
        grpc.method_handlers_generic_handler("shop.Recommendations", {
            "ForUser": grpc.unary_unary_rpc_method_handler(for_user),
        })])
    # Loopback beside frontdoor; all interfaces in a container (docker-compose sets BIND).
    address = f"{os.environ.get('BIND', '127.0.0.1')}:{os.environ['PORT']}"
    server.add_insecure_port(address)
    server.start()
    print(f"{os.environ.get('K_REVISION')} serving gRPC on {address}", flush=True)
    server.wait_for_termination()
