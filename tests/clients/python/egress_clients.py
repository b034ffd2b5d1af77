"""Google's Python auth library, unmodified, in a process whose environment is only what
`frontdoor env` prints: every URL below is Google's own, and reaches frontdoor through its
proxy and local CA.

usage:
  egress_clients.py impersonated AUDIENCE   GOOGLE_APPLICATION_CREDENTIALS is an
                                            impersonated_service_account file: an ID token
                                            through IAM Credentials (IDTokenCredentials)
  egress_clients.py compute-engine AUDIENCE compute_engine.IDTokenCredentials at its
                                            defaults: signBlob, then /oauth2/v4/token
  egress_clients.py federated AUDIENCE ACCOUNT CREDENTIALS_FILE
                                            an external-account file without impersonation:
                                            the STS token itself asks generateIdToken
Each prints one JSON object: the ID token's claims and the service's status for it."""

import json
import sys

import google.auth
import requests
from google.auth import compute_engine, identity_pool, impersonated_credentials, jwt
from google.auth.transport.requests import Request


def call(audience, token):
    return requests.get(audience + "/whoami", headers={"Authorization": "Bearer " + token}).status_code


def impersonated(audience):
    credentials, _ = google.auth.default()
    assert isinstance(credentials, impersonated_credentials.Credentials), type(credentials)
    ids = impersonated_credentials.IDTokenCredentials(credentials, target_audience=audience, include_email=True)
    ids.refresh(Request())
    return ids.token


def compute_engine_defaults(audience):
    ids = compute_engine.IDTokenCredentials(Request(), audience)
    ids.refresh(Request())
    return ids.token


def federated(audience, account, credentials_file):
    credentials = identity_pool.Credentials.from_file(
        credentials_file, scopes=["https://www.googleapis.com/auth/cloud-platform"])
    credentials.refresh(Request())
    assert credentials.service_account_email is None
    answer = requests.post(
        f"https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{account}:generateIdToken",
        headers={"Authorization": "Bearer " + credentials.token},
        json={"audience": audience, "includeEmail": True})
    answer.raise_for_status()
    return answer.json()["token"]


def main():
    mode, audience = sys.argv[1], sys.argv[2]
    if mode == "impersonated":
        token = impersonated(audience)
    elif mode == "compute-engine":
        token = compute_engine_defaults(audience)
    elif mode == "federated":
        token = federated(audience, sys.argv[3], sys.argv[4])
    else:
        sys.exit(f"unknown mode {mode}")
    print(json.dumps({"claims": jwt.decode(token, verify=False), "status": call(audience, token)}))


main()
