// Google's Node auth library, unmodified, with only `frontdoor env`'s variables set, and
// GOOGLE_APPLICATION_CREDENTIALS where a cell reads a credentials file. Node reaches
// Google's URLs through frontdoor's proxy and local CA.
//
// usage: node client.js CELL SERVICE_URL CLOSED_URL
//        node client.js verify AUDIENCE TOKENS_FILE
//
// Prints one JSON object, read by tests/it/client_matrix.rs: a value whose key starts with
// "token" is a token the test checks; "verifiers" maps each verifier to its verdict on every
// token of TOKENS_FILE (a JSON object of name to token).
const fs = require('fs');
const { GoogleAuth, OAuth2Client } = require('google-auth-library');

const CLOUD_PLATFORM = 'https://www.googleapis.com/auth/cloud-platform';

async function run(cell, url, other) {
  const auth = new GoogleAuth({ scopes: [CLOUD_PLATFORM] });
  switch (cell) {
    case 'platform':
      // CLOUD_RUN when K_CONFIGURATION is set and the metadata server answers.
      return {
        detected: (await auth.getEnv()) === 'CLOUD_RUN',
        project: await auth.getProjectId(),
        account: (await auth.getCredentials()).client_email,
      };
    case 'metadata-access':
    case 'external-access':
      return { token: await auth.getAccessToken() };
    case 'metadata-id':
    case 'key-file':
    case 'impersonated':
    case 'external-id': {
      // getIdTokenClient needs a client with fetchIdToken, which the external-account
      // clients do not have: the library says so.
      let client;
      try {
        client = await auth.getIdTokenClient(url);
      } catch (e) {
        if (String(e.message).startsWith('Cannot fetch ID token in this environment')) {
          const kind = (await auth.getClient()).constructor.name;
          return {
            unsupported: `getIdTokenClient refuses the ${kind}: "${e.message.split(',')[0]}" (src/auth/googleauth.ts, getIdTokenClient)`,
          };
        }
        throw e;
      }
      return { token: await client.idTokenProvider.fetchIdToken(url) };
    }
    case 'call': {
      const statuses = [];
      for (const u of [url, other]) {
        const client = await auth.getIdTokenClient(u);
        const response = await client.request({ url: u + '/whoami', validateStatus: () => true });
        statuses.push(response.status);
      }
      return { statuses };
    }
    case 'verify': {
      // OAuth2Client.verifyIdToken at its defaults: Google's certificates URL and issuers.
      const tokens = JSON.parse(fs.readFileSync(other, 'utf8'));
      const verdicts = {};
      for (const [name, token] of Object.entries(tokens)) {
        try {
          await new OAuth2Client().verifyIdToken({ idToken: token, audience: url });
          verdicts[name] = 'accepted';
        } catch (e) {
          verdicts[name] = 'refused: ' + String(e.message).split('\n')[0].slice(0, 300);
        }
      }
      return { verifiers: { 'OAuth2Client.verifyIdToken': verdicts } };
    }
    default:
      throw new Error(`unknown cell ${cell}`);
  }
}

if (process.argv.length < 5) {
  console.error('usage: node client.js CELL SERVICE_URL CLOSED_URL | verify AUDIENCE TOKENS_FILE');
  process.exit(2);
}
run(process.argv[2], process.argv[3], process.argv[4])
  .then((out) => console.log(JSON.stringify(out)))
  .catch((e) => {
    console.error(e);
    process.exit(1);
  });
