"""Google's Python auth library, unmodified, against frontdoor's token endpoints, with
GOOGLE_APPLICATION_CREDENTIALS pointing at a file frontdoor wrote.

usage:
  token_clients.py key-file AUDIENCE        a service-account key: fetch_id_token, and an
                                            access-token refresh
  token_clients.py seed-recipe AUDIENCE     the blog recipe of seed 003, as written
  token_clients.py identity-pool AUDIENCE GENERATE_ID_TOKEN_URL
                                            an external-account configuration: an access
                                            token through STS and generateAccessToken, then
                                            generateIdToken over REST with it
Prints one JSON object."""

import json
import os
import sys

import google.auth
import requests
from google.auth import identity_pool, jwt
from google.auth.transport.requests import Request
from google.oauth2 import id_token, service_account


def key_file(audience):
    request = Request()
    token = id_token.fetch_id_token(request, audience)
    credentials, project = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    assert isinstance(credentials, service_account.Credentials), type(credentials)
    credentials.refresh(request)
    return {"id_token": token, "claims": jwt.decode(token, verify=False),
            "access_token": credentials.token, "project": project}


# The recipe from seed 003, kept as written; only wrapped in a function (the post's own
# code refers to `audience` and returns, so it was always the body of one).
from google.auth.credentials import Scoped  # noqa: E402
from google.auth.exceptions import RefreshError  # noqa: E402


def seed_recipe(audience):
    SCOPE = audience

    # acquire application default credentials
    creds, _ = google.auth.default()
    if isinstance(creds, Scoped):
        # add Cloud Run service scope if credentials support scoping
        scopes = [SCOPE] if creds.scopes is None else [SCOPE] + list(creds.scopes)
        creds = creds.with_scopes(scopes)
    # validate ID token in credentials
    if hasattr(creds, "id_token") and creds.id_token:
        return creds.id_token
    else:
        # refresh ID token if missing
        auth_req = Request()
        try:
            creds.refresh(auth_req)
        except RefreshError as e:
            # ignore if ID token is refreshed without access token
            if not "No access token in response" in str(e):
                raise
        if hasattr(creds, "id_token") and creds.id_token:
            return creds.id_token
        elif audience:
            return id_token.fetch_id_token(auth_req, SCOPE)


def pool(audience, generate_id_token_url):
    # From the file directly: google.auth.default() with scopes would also look the project
    # up in Cloud Resource Manager, which is not part of frontdoor (see docs/choices.md).
    credentials = identity_pool.Credentials.from_file(
        os.environ["GOOGLE_APPLICATION_CREDENTIALS"],
        scopes=["https://www.googleapis.com/auth/cloud-platform"])
    credentials.refresh(Request())
    # As seed 001 shows with curl: generateIdToken over REST with the access token.
    response = requests.post(generate_id_token_url, json={"audience": audience, "includeEmail": True},
                             headers={"Authorization": f"Bearer {credentials.token}"}, timeout=10)
    response.raise_for_status()
    token = response.json()["token"]
    return {"access_token": credentials.token, "id_token": token,
            "claims": jwt.decode(token, verify=False)}


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "key-file":
        print(json.dumps(key_file(*args)))
    elif mode == "seed-recipe":
        print(json.dumps({"id_token": seed_recipe(*args)}))
    elif mode == "identity-pool":
        print(json.dumps(pool(*args)))
    else:
        raise SystemExit(f"unknown mode {mode}")
