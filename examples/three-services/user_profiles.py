"""The private `user-profiles` service. The front door has already checked its caller;
it checks again in-app, as a service may: google.oauth2.id_token.verify_oauth2_token
fetches Google's certificates from their default URL. A token that came in
X-Serverless-Authorization (or a user's) arrives with its signature removed: then the
claims can only be read, not verified, and the answer says so.

It also takes Pub/Sub pushes at /events: each `signups` event login publishes arrives in
Google's envelope with an ID token for the subscription's account, which it verifies as
Google's push-authentication sample does (email and audience), and keeps the last ten to
show in its answer. And Cloud Tasks' dispatches at /tasks: each task login queues arrives
with an ID token for login's account and Cloud Tasks' X-CloudTasks-* headers, verified
the same way and kept likewise."""

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
tasks = collections.deque(maxlen=10)
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
        seen, done = list(events), list(tasks)
    return 200, {"service": "user-profiles", "caller": who, "verified_in_app": verified,
                 "profile": {"name": "Ada"}, "events": seen, "tasks": done}


def verified_sender(request):
    """The claims of a Google-managed caller's ID token (a push's, a task's), verified as
    Google's samples verify them, or why not."""
    token = (request.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
    try:
        claims = id_token.verify_oauth2_token(token, Request(), os.environ.get("AUDIENCE"))
    except (ValueError, google.auth.exceptions.GoogleAuthError) as e:
        return None, f"token refused: {e}"
    if claims.get("email") != os.environ.get("PUSHER") or not claims.get("email_verified"):
        return None, f"sent by {claims.get('email')}, not {os.environ.get('PUSHER')}"
    return claims, None


def receive(request, body):
    """A Pub/Sub push at /events, or a Cloud Tasks dispatch at /tasks: 204 acknowledges it;
    anything else has Pub/Sub or Cloud Tasks retry it."""
    if request.path not in ("/events", "/tasks"):
        return 404, {"error": "pushes go to /events, tasks to /tasks"}
    claims, why = verified_sender(request)
    if claims is None:
        return 400, {"error": why}
    if request.path == "/tasks":
        task = {
            "queue": request.headers.get("X-CloudTasks-QueueName"),
            "task": request.headers.get("X-CloudTasks-TaskName"),
            "body": body.decode(errors="replace"),
            "dispatched_as": claims["email"],
        }
        with events_lock:
            tasks.append(task)
        return 204, None
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
