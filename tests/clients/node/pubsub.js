// Google's Node library (@google-cloud/pubsub), unmodified, as an app uses it: create a
// topic and a subscription, publish five messages, receive them with a streaming pull
// (`subscription.on('message')`) and acknowledge them. Where it connects is the
// environment's business: PUBSUB_EMULATOR_HOST if set, else pubsub.googleapis.com through
// the proxy with the metadata server's credentials.
//
// usage: node pubsub.js TOPIC      prints {"ids", "received"} as JSON
'use strict';

const {PubSub} = require('@google-cloud/pubsub');

async function main() {
  const topicId = process.argv[2];
  const pubsub = new PubSub({projectId: process.env.GOOGLE_CLOUD_PROJECT});
  const [topic] = await pubsub.createTopic(topicId);
  const [subscription] = await topic.createSubscription(`${topicId}-sub`);
  const ids = [];
  for (let i = 0; i < 5; i++) {
    ids.push(await topic.publishMessage({data: Buffer.from(`m${i}`), attributes: {origin: 'node'}}));
  }
  const received = await new Promise((resolve, reject) => {
    const got = [];
    const timer = setTimeout(() => reject(new Error(`received only ${JSON.stringify(got)}`)), 30000);
    subscription.on('error', reject);
    subscription.on('message', message => {
      got.push(message.data.toString());
      message.ack();
      if (got.length >= 5) {
        clearTimeout(timer);
        resolve(got);
      }
    });
  });
  await subscription.close();
  await pubsub.close();
  console.log(JSON.stringify({ids, received: received.sort()}));
}

main().catch(e => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
