"""The public `login` service. It calls `user-profiles` and `search` the way the Cloud Run
documentation shows: an ID token for the receiving service's URL from
google.oauth2.id_token.fetch_id_token, then a request to that URL; and `recommendations`,
a gRPC service, with the same kind of token as the call's credentials over TLS to
HOST:443. Each time, it also publishes a `signups` event to Pub/Sub with its access token,
as seed 002's recipe calls a Google API (the REST method, through google-auth's
AuthorizedSession); a push subscription delivers it to user-profiles. The code is the Cloud Run code itself: under frontdoor, the metadata server, the
run.app URLs and Google's certificates are reached through the proxy and CA its
environment names (gRPC reads its own: https_proxy and GRPC_DEFAULT_SSL_ROOTS_FILE_PATH)."""

import base64
import json
import os

import google.auth
import google.auth.exceptions
import grpc
import requests
from google.auth.transport.requests import AuthorizedSession, Request
from google.oauth2 import id_token

from common import serve


def call(url):
    token = id_token.fetch_id_token(Request(), url)
    response = requests.get(url, headers={"Authorization": "Bearer " + token}, timeout=10)
    try:
        body = response.json()
    except ValueError:
        body = response.text
    result = {"status": response.status_code, "body": body}
    # frontdoor says why it turned a request away (Cloud Run itself does not).
    if "x-frontdoor-reason" in response.headers:
        result["reason"] = response.headers["x-frontdoor-reason"]
    return result


def call_grpc(host):
    token = id_token.fetch_id_token(Request(), f"https://{host}")
    credentials = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(), grpc.access_token_call_credentials(token))
    with grpc.secure_channel(f"{host}:443", credentials) as channel:
        for_user = channel.unary_unary("/shop.Recommendations/ForUser")
        try:
            answer = for_user(json.dumps({"user": "ada"}).encode(), timeout=10)
            return {"code": "OK", "body": json.loads(answer)}
        except grpc.RpcError as e:
            return {"code": e.code().name, "details": e.details()}


def publish(topic, text):
    try:
        credentials, project = google.auth.default(scopes=["https://www.googleapis.com/auth/pubsub"])
        url = f"https://pubsub.googleapis.com/v1/projects/{project}/topics/{topic}:publish"
        data = base64.b64encode(text.encode()).decode()
        response = AuthorizedSession(credentials).post(url, json={"messages": [{"data": data}]}, timeout=10)
    except (google.auth.exceptions.GoogleAuthError, requests.RequestException) as e:
        # One failed publish is reported beside the other calls, not in place of them.
        return {"error": f"{type(e).__name__}: {e}"}
    try:
        body = response.json()
    except ValueError:
        body = response.text
    return {"status": response.status_code, "body": body}


def enqueue(queue, text):
    """A Cloud Tasks HTTP task for user-profiles' /tasks, dispatched as login's own account
    (an ID token for user-profiles' URL), queued with login's access token."""
    try:
        credentials, project = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        # The metadata server's credentials learn their account's email on refresh.
        credentials.refresh(Request())
        parent = f"projects/{project}/locations/us-central1/queues/{queue}"
        target = os.environ["USER_PROFILES_URL"]
        task = {"httpRequest": {
            "url": f"{target}/tasks",
            "body": base64.b64encode(text.encode()).decode(),
            "oidcToken": {"serviceAccountEmail": credentials.service_account_email, "audience": target},
        }}
        url = f"https://cloudtasks.googleapis.com/v2/{parent}/tasks"
        response = AuthorizedSession(credentials).post(url, json={"task": task}, timeout=10)
    except (google.auth.exceptions.GoogleAuthError, requests.RequestException, AttributeError) as e:
        return {"error": f"{type(e).__name__}: {e}"}
    try:
        body = response.json()
    except ValueError:
        body = response.text
    return {"status": response.status_code, "body": body}


def answer(_request):
    return 200, {
        "user-profiles": call(os.environ["USER_PROFILES_URL"]),
        "search": call(os.environ["SEARCH_URL"]),
        "recommendations": call_grpc(os.environ["RECOMMENDATIONS_HOST"]),
        "published": publish("signups", "ada signed in"),
        "queued": enqueue("welcome-mail", "welcome, ada"),
    }


if __name__ == "__main__":
    serve(answer)
