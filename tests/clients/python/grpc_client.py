"""A gRPC client as Google's gRPC-on-Cloud-Run samples write one in Python: an ID token for
the service's URL from google-auth (the metadata server, on Cloud Run), sent as call
credentials over TLS to HOST:443. Its environment is only what `frontdoor env` sets.

usage: grpc_client.py HOST CASE [--no-token | --audience AUDIENCE]
  kinds  the four method kinds, trailers and a client deadline
  unary  one unary call
  big    a 100 MiB client stream and a 100 MiB server stream
  die    a server stream whose container dies after 3 messages
  relay  Relay through HOST to the host named by the next argument
  refuse a call the container itself refuses
Prints one JSON object: what each call answered, or its status code and details.
"""

import json
import queue
import sys
import time

import google.auth.transport.requests
import google.oauth2.id_token
import grpc

HOST, CASE = sys.argv[1], sys.argv[2]
PROBE = "/frontdoor.test.Probe/"


def channel():
    ssl = grpc.ssl_channel_credentials()
    if "--no-token" in sys.argv:
        return grpc.secure_channel(f"{HOST}:443", ssl)
    audience = f"https://{HOST}"
    if "--audience" in sys.argv:
        audience = sys.argv[sys.argv.index("--audience") + 1]
    token = google.oauth2.id_token.fetch_id_token(
        google.auth.transport.requests.Request(), audience)
    credentials = grpc.composite_channel_credentials(
        ssl, grpc.access_token_call_credentials(token))
    return grpc.secure_channel(f"{HOST}:443", credentials, options=[
        ("grpc.max_receive_message_length", 8 << 20)])


def status(call, *args, **kwargs):
    """What a call answered, or how it failed."""
    try:
        return {"code": "OK", "answer": call(*args, **kwargs)}
    except grpc.RpcError as e:
        return {"code": e.code().name, "details": e.details()}


def kinds(ch):
    out = {}
    answer = ch.unary_unary(PROBE + "Unary")(b"hello", timeout=20)
    out["unary"] = json.loads(answer)

    stream = ch.unary_stream(PROBE + "ServerStream")(
        json.dumps({"count": 5, "size": 3}).encode(), timeout=20)
    out["server_stream"] = [m.decode() for m in stream]

    out["client_stream"] = ch.stream_unary(PROBE + "ClientStream")(
        iter([b"a" * 10, b"b" * 20, b"c" * 30]), timeout=20).decode()

    # Each message is sent only once the answer to the one before has arrived: the
    # exchange interleaves, or it never ends (the deadline then fails it).
    outbox = queue.Queue()
    outbox.put(b"1")

    def requests():
        while True:
            item = outbox.get()
            if item is None:
                return
            yield item

    echoes = []
    for answer in ch.stream_stream(PROBE + "Bidi")(requests(), timeout=20):
        echoes.append(answer.decode())
        outbox.put(str(len(echoes) + 1).encode() if len(echoes) < 3 else None)
    out["bidi"] = echoes

    answer, call = ch.unary_unary(PROBE + "Trailers").with_call(b"", timeout=20)
    out["trailers"] = {"answer": answer.decode(),
                       "trailing": dict(call.trailing_metadata() or ())}

    out["deadline"] = status(ch.unary_unary(PROBE + "Slow"),
                             json.dumps({"seconds": 5}).encode(), timeout=0.5)
    out["deadline"].pop("answer", None)
    # The container saw the call end too, well before its five seconds.
    time.sleep(0.5)
    out["stats"] = json.loads(ch.unary_unary(PROBE + "Stats")(b"", timeout=20))
    return out


def big(ch):
    mib = 1 << 20
    started = time.monotonic()
    sent = ch.stream_unary(PROBE + "ClientStream")(
        (b"u" * mib for _ in range(100)), timeout=120)
    received = 0
    for m in ch.unary_stream(PROBE + "ServerStream")(
            json.dumps({"count": 100, "size": mib}).encode(), timeout=120):
        received += len(m)
    return {"client_stream": int(sent), "server_stream": received,
            "seconds": round(time.monotonic() - started, 2)}


def die(ch):
    got = []
    try:
        for m in ch.unary_stream(PROBE + "ServerStream")(
                json.dumps({"count": 3, "size": 4, "die": True}).encode(), timeout=20):
            got.append(m.decode())
        return {"code": "OK", "messages": got}
    except grpc.RpcError as e:
        return {"code": e.code().name, "details": e.details(), "messages": got}


def main():
    with channel() as ch:
        if CASE == "kinds":
            out = kinds(ch)
        elif CASE == "unary":
            out = status(ch.unary_unary(PROBE + "Unary"), b"hello", timeout=20)
            if out["code"] == "OK":
                out["answer"] = json.loads(out["answer"])
        elif CASE == "refuse":
            out = status(ch.unary_unary(PROBE + "Refuse"), b"", timeout=20)
        elif CASE == "big":
            out = big(ch)
        elif CASE == "die":
            out = die(ch)
        elif CASE == "relay":
            ask = {"target": sys.argv[3], "method": PROBE + "Unary", "message": "relayed"}
            out = status(ch.unary_unary(PROBE + "Relay"), json.dumps(ask).encode(), timeout=30)
            if out["code"] == "OK":
                out["answer"] = json.loads(out["answer"])
        else:
            sys.exit(f"unknown case {CASE}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
