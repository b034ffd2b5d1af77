// Two Cloud Run services tested offline: `login` may call `search`, `report` may not.
// Each test starts its own frontdoor, on ports nobody else uses, and stops it afterwards
// whether the test passed or failed.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { start } from 'frontdoor-testing';

const searchApp = fileURLToPath(new URL('./search_app.js', import.meta.url));

const CONFIG = `
project: {id: shop-test, number: "123456789012", region: europe-west1}
service_accounts:
  - email: login@shop-test.iam.gserviceaccount.com
  - email: report@shop-test.iam.gserviceaccount.com
  - email: search@shop-test.iam.gserviceaccount.com
services:
  - name: search
    service_account: search@shop-test.iam.gserviceaccount.com
    command: [${JSON.stringify(process.execPath)}, ${JSON.stringify(searchApp)}]
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
`;

// The caller's code, as it runs on Cloud Run: Google's library fetches an ID token for the
// URL from the metadata server, and its client sends the call with it.
const CALLER = `
const { GoogleAuth } = require('google-auth-library');
const url = process.argv[1];
new GoogleAuth().getIdTokenClient(url)
  .then((client) => client.request({ url: url + '/search?q=boots', validateStatus: () => true }))
  .then((response) => console.log(response.status));
`;

// Runs the caller as `service` would run on Cloud Run: only its environment differs.
function callAs(frontdoor, service, url) {
  const env = { ...process.env, ...frontdoor.env(service) };
  const cwd = fileURLToPath(new URL('..', import.meta.url));
  return Number(execFileSync(process.execPath, ['-e', CALLER, url], { env, cwd, encoding: 'utf8' }));
}

test('login may call search', async (t) => {
  const frontdoor = await start(CONFIG);
  t.after(() => frontdoor.stop());
  assert.equal(callAs(frontdoor, 'login', await frontdoor.url('search')), 200);
});

test('report may not, and the decision says why', async (t) => {
  const frontdoor = await start(CONFIG);
  t.after(() => frontdoor.stop());
  assert.equal(callAs(frontdoor, 'report', await frontdoor.url('search')), 403);
  const denied = (await frontdoor.decisions({ surface: 'frontdoor' })).filter((d) => !d.allowed);
  assert.equal(denied.at(-1).code, 'no_invoker_binding');
  assert.equal(denied.at(-1).principal, 'serviceAccount:report@shop-test.iam.gserviceaccount.com');
});
