"""Google's Cloud Scheduler library for Python, unmodified, as its samples use it: creates an
HTTP job with an OIDC token through whatever endpoint the environment gives (the egress
proxy `frontdoor env` sets, with the service's own credentials), runs it now, and reads it
back.

usage: scheduler_client.py JOB URI ACCOUNT AUDIENCE     prints {"job", "schedule", "state"}"""

import json
import sys

from google.cloud import scheduler_v1

job_id, uri, account, audience = sys.argv[1:5]
client = scheduler_v1.CloudSchedulerClient()
parent = client.common_location_path("demo-project", "us-central1")
job = client.create_job(
    parent=parent,
    job=scheduler_v1.Job(
        name=client.job_path("demo-project", "us-central1", job_id),
        schedule="0 3 * * *",
        time_zone="Europe/Paris",
        http_target=scheduler_v1.HttpTarget(
            uri=uri,
            http_method=scheduler_v1.HttpMethod.POST,
            body=b'{"from": "python"}',
            oidc_token=scheduler_v1.OidcToken(
                service_account_email=account, audience=audience
            ),
        ),
    ),
)
client.run_job(name=job.name)
got = client.get_job(name=job.name)
print(
    json.dumps(
        {"job": got.name, "schedule": got.schedule, "state": scheduler_v1.Job.State(got.state).name}
    )
)
