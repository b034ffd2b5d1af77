"""Google's Cloud Tasks library for Python, unmodified, as its quickstart uses it: creates a
queue and an HTTP task with an OIDC token through whatever endpoint the environment gives
(the egress proxy `frontdoor env` sets, with the service's own credentials), then lists
the queue's tasks.

usage: tasks_client.py QUEUE URL ACCOUNT AUDIENCE     prints {"queue", "task", "listed"} as JSON"""

import json
import sys

from google.cloud import tasks_v2

queue_id, url, account, audience = sys.argv[1:5]
client = tasks_v2.CloudTasksClient()
parent = client.common_location_path("demo-project", "us-central1")
queue = client.create_queue(
    parent=parent,
    queue=tasks_v2.Queue(name=client.queue_path("demo-project", "us-central1", queue_id)),
)
task = client.create_task(
    parent=queue.name,
    task=tasks_v2.Task(
        http_request=tasks_v2.HttpRequest(
            http_method=tasks_v2.HttpMethod.POST,
            url=url,
            headers={"Content-Type": "application/json"},
            body=json.dumps({"from": "python"}).encode(),
            oidc_token=tasks_v2.OidcToken(service_account_email=account, audience=audience),
        )
    ),
)
listed = [t.name for t in client.list_tasks(parent=queue.name)]
print(json.dumps({"queue": queue.name, "task": task.name, "listed": listed}))
