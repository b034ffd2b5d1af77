"""A gRPC container for frontdoor's tests: serves cleartext HTTP/2 (h2c) on $PORT, as a
gRPC server on Cloud Run does, with one method of each kind. Messages are raw bytes (no
protobuf): the transport, the front door and the tokens are what is under test.

Methods of frontdoor.test.Probe:
  Unary         answers JSON: the request, and the metadata and authority it arrived with
  ServerStream  {"count": N, "size": S, "die": bool}: N messages of S bytes; with die, the
                process exits after them (a container dying mid-stream)
  ClientStream  answers the total bytes of the messages it was sent
  Bidi          answers each message as it arrives, prefixed with "echo:"
  Trailers      answers "ok" with trailing metadata x-probe-trailer: yes
  Slow          {"seconds": S}: waits, watching for the caller's cancellation
  Stats         answers JSON: how many Slow calls ended cancelled
  Refuse        ends the call at once with PERMISSION_DENIED, as an app's own check does
  Relay         {"target": "HOST", "method": M, "message": T}: calls HOST:443 with an ID
                token for https://HOST from the metadata server, as Google's grpc-ping
                relay does, and answers JSON with the callee's answer or its status
"""

import json
import os
import sys
import threading
import time
from concurrent import futures

import grpc

SERVICE = "frontdoor.test.Probe"
CANCELLED = {"count": 0}
LOCK = threading.Lock()


def unary(request, context):
    metadata = {k: v for k, v in context.invocation_metadata() if not k.endswith("-bin")}
    return json.dumps({
        "request": request.decode(errors="replace"),
        "metadata": metadata,
        "service": os.environ.get("K_SERVICE"),
    }).encode()


def server_stream(request, context):
    ask = json.loads(request)
    chunk = b"x" * ask["size"]
    for _ in range(ask["count"]):
        yield chunk
    if ask.get("die"):
        # Let the messages leave, then die as a crashed container does.
        time.sleep(0.5)
        os._exit(3)


def client_stream(requests, context):
    return str(sum(len(r) for r in requests)).encode()


def bidi(requests, context):
    for r in requests:
        yield b"echo:" + r


def trailers(request, context):
    context.set_trailing_metadata((("x-probe-trailer", "yes"),))
    return b"ok"


def slow(request, context):
    end = time.monotonic() + json.loads(request)["seconds"]
    while time.monotonic() < end:
        if not context.is_active():
            with LOCK:
                CANCELLED["count"] += 1
            return b""
        time.sleep(0.02)
    return b"done"


def stats(request, context):
    with LOCK:
        return json.dumps({"cancelled": CANCELLED["count"]}).encode()


def refuse(request, context):
    context.abort(grpc.StatusCode.PERMISSION_DENIED, "the app's own check says no")


def relay(request, context):
    import google.auth.transport.requests
    import google.oauth2.id_token

    ask = json.loads(request)
    host = ask["target"]
    token = google.oauth2.id_token.fetch_id_token(
        google.auth.transport.requests.Request(), f"https://{host}")
    credentials = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(), grpc.access_token_call_credentials(token))
    with grpc.secure_channel(f"{host}:443", credentials) as channel:
        call = channel.unary_unary(ask["method"])
        try:
            answer = call(ask["message"].encode(), timeout=20)
            return json.dumps({"code": "OK", "answer": json.loads(answer)}).encode()
        except grpc.RpcError as e:
            return json.dumps({"code": e.code().name, "details": e.details()}).encode()


def main():
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Trailers": grpc.unary_unary_rpc_method_handler(trailers),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
        "Stats": grpc.unary_unary_rpc_method_handler(stats),
        "Relay": grpc.unary_unary_rpc_method_handler(relay),
        "Refuse": grpc.unary_unary_rpc_method_handler(refuse),
    }
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16),
        handlers=[grpc.method_handlers_generic_handler(SERVICE, handlers)],
        options=[("grpc.max_receive_message_length", 8 << 20)],
    )
    server.add_insecure_port(f"127.0.0.1:{os.environ['PORT']}")
    server.start()
    print(f"grpc_app: serving {SERVICE} on {os.environ['PORT']}", file=sys.stderr, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
