"""The public `login` service. It calls `user-profiles` and `search` the way the Cloud Run
documentation shows: an ID token for the receiving service's URL from
google.oauth2.id_token.fetch_id_token, then a request to that URL. The code is the Cloud
Run code itself: under frontdoor, the metadata server, the run.app URLs and Google's
certificates are reached through the proxy and CA its environment names."""

import os

import requests
from google.auth.transport.requests import Request
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


def answer(_request):
    return 200, {
        "user-profiles": call(os.environ["USER_PROFILES_URL"]),
        "search": call(os.environ["SEARCH_URL"]),
    }


if __name__ == "__main__":
    serve(answer)
