"""Google's Pub/Sub library, unmodified, as an app uses it: create a topic and a pull
subscription, publish five messages, receive them with a streaming pull (`subscribe`),
acknowledge them, and check with a plain pull that none is left. Where it connects is the
environment's business: PUBSUB_EMULATOR_HOST if set, else pubsub.googleapis.com through
the proxy with the metadata server's credentials.

usage: pubsub_client.py TOPIC [COUNT]      prints {"ids", "received", "left", "policy"} as JSON

With credentials (not at PUBSUB_EMULATOR_HOST, where no policy may be set), it also grants
reader's account roles/pubsub.publisher on the topic through the library's IAM methods
(google.iam.v1.IAMPolicy on the same channel), read back as "role member".

COUNT (5 by default) past the library's flow control (1,000 messages out at once) proves
that acks sent as unary calls make room on the stream."""

import json
import os
import sys
import time

from google.cloud import pubsub_v1

topic_id = sys.argv[1]
count = int(sys.argv[2]) if len(sys.argv) > 2 else 5
project = os.environ["GOOGLE_CLOUD_PROJECT"]
publisher = pubsub_v1.PublisherClient()
subscriber = pubsub_v1.SubscriberClient()
topic = publisher.topic_path(project, topic_id)
subscription = subscriber.subscription_path(project, topic_id + "-sub")
publisher.create_topic(name=topic)
granted = None
if not os.environ.get("PUBSUB_EMULATOR_HOST"):
    policy = publisher.get_iam_policy(request={"resource": topic})
    policy.bindings.add(
        role="roles/pubsub.publisher",
        members=[f"serviceAccount:reader@{project}.iam.gserviceaccount.com"],
    )
    publisher.set_iam_policy(request={"resource": topic, "policy": policy})
    granted = publisher.get_iam_policy(request={"resource": topic})
    granted = [f"{b.role} {m}" for b in granted.bindings for m in b.members]
subscriber.create_subscription(name=subscription, topic=topic)
futures = [publisher.publish(topic, f"m{i}".encode(), origin="python") for i in range(count)]
ids = [f.result(timeout=60) for f in futures]

received = []


def callback(message):
    received.append(message.data.decode())
    message.ack()


future = subscriber.subscribe(subscription, callback)
deadline = time.time() + 60
while len(received) < count and time.time() < deadline:
    time.sleep(0.05)
future.cancel()
left = subscriber.pull(subscription=subscription, max_messages=10, timeout=30)
if count > 5:
    # Each once, all of them; else how many, not the whole list.
    whole = sorted(received) == sorted(f"m{i}" for i in range(count))
    received = ["all"] if whole else [f"{len(received)} received, {len(set(received))} distinct"]
print(json.dumps({"ids": len(ids), "received": sorted(received), "left": len(left.received_messages), "policy": granted}))
