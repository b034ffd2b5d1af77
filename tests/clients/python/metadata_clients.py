"""Google's Python auth library, unmodified, against frontdoor's metadata server. The
environment points it there (GCE_METADATA_HOST and GCE_METADATA_IP), exactly as a process
on Cloud Run would be configured, and nothing else changes.

usage: metadata_clients.py AUDIENCE CERTS_URL [CALL_URL]
Prints one JSON object with what each scenario produced."""

import json
import sys

import google.auth
import google.auth.transport.requests
from google.auth import compute_engine, jwt
from google.auth.transport.requests import AuthorizedSession, Request
from google.oauth2 import id_token


def main(audience, certs_url, call_url=None):
    request = Request()
    out = {}

    # 1. The documented one-liner for service-to-service calls.
    token = id_token.fetch_id_token(request, audience)
    out["fetch_id_token"] = jwt.decode(token, verify=False)

    # 2. The verifier Google documents, pointed at frontdoor's certificates.
    out["verified"] = id_token.verify_token(token, request, audience=audience, certs_url=certs_url)

    # 3. Application default credentials find the metadata server and refresh.
    credentials, project = google.auth.default()
    assert isinstance(credentials, compute_engine.Credentials), type(credentials)
    credentials.refresh(request)
    out["access_token"] = {"token": credentials.token, "project": project,
                           "email": credentials.service_account_email,
                           "expiry": credentials.expiry.isoformat()}

    # 4. The ID-token credentials class the libraries use under the hood.
    id_credentials = compute_engine.IDTokenCredentials(request, audience,
                                                       use_metadata_identity_endpoint=True)
    id_credentials.refresh(request)
    out["id_token_credentials"] = jwt.decode(id_credentials.token, verify=False)

    # 5. A call through the library's own session, which adds the token itself.
    if call_url:
        response = AuthorizedSession(id_credentials).get(call_url)
        out["call"] = {"status": response.status_code, "body": response.text}
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main(*sys.argv[1:])
