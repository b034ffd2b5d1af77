"""Google's Pub/Sub library, unmodified, as an app uses it: create a topic and a pull
subscription, publish five messages, receive them with a streaming pull (`subscribe`),
acknowledge them, and check with a plain pull that none is left. Where it connects is the
environment's business: PUBSUB_EMULATOR_HOST if set, else pubsub.googleapis.com through
the proxy with the metadata server's credentials.

usage: pubsub_client.py TOPIC      prints {"ids", "received", "left"} as JSON"""

import json
import os
import sys
import time

from google.cloud import pubsub_v1

topic_id = sys.argv[1]
project = os.environ["GOOGLE_CLOUD_PROJECT"]
publisher = pubsub_v1.PublisherClient()
subscriber = pubsub_v1.SubscriberClient()
topic = publisher.topic_path(project, topic_id)
subscription = subscriber.subscription_path(project, topic_id + "-sub")
publisher.create_topic(name=topic)
subscriber.create_subscription(name=subscription, topic=topic)
ids = [publisher.publish(topic, f"m{i}".encode(), origin="python").result(timeout=30) for i in range(5)]

received = []


def callback(message):
    received.append(message.data.decode())
    message.ack()


future = subscriber.subscribe(subscription, callback)
deadline = time.time() + 30
while len(received) < 5 and time.time() < deadline:
    time.sleep(0.05)
future.cancel()
left = subscriber.pull(subscription=subscription, max_messages=10, timeout=30)
print(json.dumps({"ids": ids, "received": sorted(received), "left": len(left.received_messages)}))
