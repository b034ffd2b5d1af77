"""Two Cloud Run services tested offline: `login` may call `search`, `report` may not.

Each test gets its own frontdoor (the `frontdoor` fixture), on ports nobody else uses,
stopped after the test whether it passes or fails."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SEARCH_APP = Path(__file__).with_name("search_app.py")

CONFIG = f"""
project: {{id: shop-test, number: "123456789012", region: europe-west1}}
service_accounts:
  - email: login@shop-test.iam.gserviceaccount.com
  - email: report@shop-test.iam.gserviceaccount.com
  - email: search@shop-test.iam.gserviceaccount.com
services:
  - name: search
    service_account: search@shop-test.iam.gserviceaccount.com
    command: [{json.dumps(sys.executable)}, {json.dumps(str(SEARCH_APP))}]
    iam_policy:
      bindings:
        - role: roles/run.invoker
          members: [serviceAccount:login@shop-test.iam.gserviceaccount.com]
  - name: login
    service_account: login@shop-test.iam.gserviceaccount.com
    upstream: builtin:echo
  - name: report
    service_account: report@shop-test.iam.gserviceaccount.com
    upstream: builtin:echo
"""

# The caller's code, as it runs on Cloud Run: Google's library fetches an ID token for the
# URL from the metadata server, and the call carries it.
CALLER = """
import sys
import google.auth.transport.requests, google.oauth2.id_token, requests
url = sys.argv[1]
token = google.oauth2.id_token.fetch_id_token(google.auth.transport.requests.Request(), url)
print(requests.get(url + "/search?q=boots", headers={"Authorization": f"Bearer {token}"}).status_code)
"""


def call_as(frontdoor, service, url):
    """Runs the caller as `service` would run on Cloud Run: only its environment differs."""
    env = {**os.environ, **frontdoor.env(service)}
    done = subprocess.run(
        [sys.executable, "-c", CALLER, url], env=env, capture_output=True, text=True, check=True
    )
    return int(done.stdout)


@pytest.mark.frontdoor_config(CONFIG)
def test_login_may_call_search(frontdoor):
    assert call_as(frontdoor, "login", frontdoor.url("search")) == 200


@pytest.mark.frontdoor_config(CONFIG)
def test_report_may_not_and_the_decision_says_why(frontdoor):
    assert call_as(frontdoor, "report", frontdoor.url("search")) == 403
    denied = [d for d in frontdoor.decisions(surface="frontdoor") if not d["allowed"]]
    assert denied[-1]["code"] == "no_invoker_binding"
    assert denied[-1]["principal"] == "serviceAccount:report@shop-test.iam.gserviceaccount.com"
