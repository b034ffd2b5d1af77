"""Google's Python auth library (google-auth), unmodified, with only `frontdoor env`'s
variables set, and GOOGLE_APPLICATION_CREDENTIALS where a cell reads a credentials file.

usage: client.py CELL SERVICE_URL CLOSED_URL
       client.py verify AUDIENCE TOKENS_FILE

Prints one JSON object, read by tests/it/client_matrix.rs: a value whose key starts with
"token" is a token the test checks; "verifiers" maps each verifier to its verdict on every
token of TOKENS_FILE (a JSON object of name to token).
"""

import json
import sys

import google.auth
import google.auth.transport.requests
from google.auth import compute_engine
from google.auth.transport.requests import AuthorizedSession
from google.oauth2 import id_token

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


def run(cell, url, other):
    request = google.auth.transport.requests.Request()
    if cell == "platform":
        credentials, project = google.auth.default()
        detected = isinstance(credentials, compute_engine.Credentials)
        if detected:
            credentials.refresh(request)  # reads the account's email too
        return {
            "detected": detected,
            "project": project,
            "account": getattr(credentials, "service_account_email", None),
        }
    if cell in ("metadata-access", "external-access"):
        credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM])
        credentials.refresh(request)
        return {"token": credentials.token}
    if cell in ("metadata-id", "key-file", "impersonated", "external-id"):
        credentials = id_token.fetch_id_token_credentials(url, request)
        # It reads service_account and impersonated_service_account files only: given an
        # external_account file, it ignores it and asks the metadata server, which would
        # hand out the service's own identity instead.
        if cell != "metadata-id" and isinstance(credentials, compute_engine.IDTokenCredentials):
            return {
                "unsupported": "fetch_id_token ignores an external_account file and falls "
                "back to the metadata server's identity (google/oauth2/id_token.py, "
                "fetch_id_token_credentials)"
            }
        credentials.refresh(request)
        return {"token": credentials.token}
    if cell == "call":
        statuses = []
        for u in (url, other):
            credentials = id_token.fetch_id_token_credentials(u, request)
            statuses.append(AuthorizedSession(credentials).get(u + "/whoami").status_code)
        return {"statuses": statuses}
    if cell == "verify":
        # verify_oauth2_token at its defaults: Google's certificates URL and issuers.
        with open(other) as f:
            tokens = json.load(f)
        verdicts = {}
        for name, token in tokens.items():
            try:
                id_token.verify_oauth2_token(token, request, url)
                verdicts[name] = "accepted"
            except Exception as e:  # every failure is a refusal, with its reason
                verdicts[name] = f"refused: {type(e).__name__}: {e}"[:400]
        return {"verifiers": {"id_token.verify_oauth2_token": verdicts}}
    raise SystemExit(f"unknown cell {cell}")


if __name__ == "__main__":
    if len(sys.argv) < 4:
        raise SystemExit("usage: client.py CELL SERVICE_URL CLOSED_URL | verify AUDIENCE TOKENS_FILE")
    print(json.dumps(run(*sys.argv[1:4])))
