"""The private `user-profiles` service. The front door has already checked its caller;
it checks again in-app, as a service may: google.oauth2.id_token.verify_oauth2_token
fetches Google's certificates from their default URL. A token that came in
X-Serverless-Authorization (or a user's) arrives with its signature removed: then the
claims can only be read, not verified, and the answer says so.

It also takes Pub/Sub pushes at /events: each `signups` event login publishes arrives in
Google's envelope with an ID token for the subscription's account, which it verifies as
Google's push-authentication sample does (email and audience), and keeps the last ten to
show in its answer."""

import base64
import binascii
import collections
import json
import os
import threading

import google.auth.exceptions
from google.auth.transport.requests import Request
from google.oauth2 import id_token

from common import serve

events = collections.deque(maxlen=10)
events_lock = threading.Lock()


def claims_of(token):
    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}


def caller(request):
    header = request.headers.get("X-Serverless-Authorization") or request.headers.get("Authorization") or ""
    token = header.removeprefix("Bearer ").strip()
    if token.endswith(".SIGNATURE_REMOVED_BY_GOOGLE"):
        claims, verified = claims_of(token), False
    else:
        try:
            claims, verified = id_token.verify_oauth2_token(token, Request(), os.environ.get("AUDIENCE")), True
        except ValueError:
            return None, False
    return claims.get("email") or claims.get("sub"), verified


def answer(request):
    who, verified = caller(request)
    with events_lock:
        seen = list(events)
    return 200, {"service": "user-profiles", "caller": who, "verified_in_app": verified,
                 "profile": {"name": "Ada"}, "events": seen}


def receive(request, body):
    """A Pub/Sub push: 204 acknowledges it; anything else has Pub/Sub retry it."""
    if request.path != "/events":
        return 404, {"error": "pushes go to /events"}
    token = (request.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
    try:
        claims = id_token.verify_oauth2_token(token, Request(), os.environ.get("AUDIENCE"))
    except (ValueError, google.auth.exceptions.GoogleAuthError) as e:
        return 400, {"error": f"push token refused: {e}"}
    if claims.get("email") != os.environ.get("PUSHER") or not claims.get("email_verified"):
        return 400, {"error": f"push from {claims.get('email')}, not {os.environ.get('PUSHER')}"}
    try:
        envelope = json.loads(body)
        message = envelope["message"]
        event = {
            "data": base64.b64decode(message.get("data", "")).decode(),
            "message_id": message["messageId"],
            "subscription": envelope["subscription"],
            "pushed_by": claims["email"],
        }
    except (ValueError, KeyError, TypeError, binascii.Error) as e:
        # A push that is no envelope would only fail again: acknowledged, and said so.
        print(f"a push that is no Pub/Sub envelope, dropped: {e}", flush=True)
        return 204, None
    with events_lock:
        events.append(event)
    return 204, None


if __name__ == "__main__":
    serve(answer, receive)
