// Google's Node library (@google-cloud/tasks), unmodified, as its quickstart uses it: create
// a queue, then an HTTP task with an OIDC token, and list the queue's tasks. It reaches
// cloudtasks.googleapis.com through the proxy `frontdoor env` sets, with the metadata
// server's credentials.
//
// usage: node tasks.js QUEUE URL ACCOUNT AUDIENCE     prints {"queue", "task"} as JSON
'use strict';

const {CloudTasksClient} = require('@google-cloud/tasks');

async function main() {
  const [queueId, url, account, audience] = process.argv.slice(2);
  const client = new CloudTasksClient();
  const project = process.env.GOOGLE_CLOUD_PROJECT;
  const parent = client.locationPath(project, 'us-central1');
  const [queue] = await client.createQueue({
    parent,
    queue: {name: client.queuePath(project, 'us-central1', queueId)},
  });
  const [task] = await client.createTask({
    parent: queue.name,
    task: {
      httpRequest: {
        httpMethod: 'POST',
        url,
        headers: {'Content-Type': 'application/json'},
        body: Buffer.from(JSON.stringify({from: 'node'})),
        oidcToken: {serviceAccountEmail: account, audience},
      },
    },
  });
  await client.close();
  console.log(JSON.stringify({queue: queue.name, task: task.name}));
}

main().catch(e => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
