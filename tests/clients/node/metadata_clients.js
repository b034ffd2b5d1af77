// Google's Node auth library, unmodified, against frontdoor's metadata server, found
// through GCE_METADATA_HOST as a process on Cloud Run would find the real one.
//
// usage: node metadata_clients.js AUDIENCE CERTS_URL CALL_URL
// Prints one JSON object with what each scenario produced.
'use strict';

const {GoogleAuth, OAuth2Client} = require('google-auth-library');

async function main(audience, certsUrl, callUrl) {
  const auth = new GoogleAuth();
  const client = await auth.getIdTokenClient(audience);
  const headers = await client.getRequestHeaders();
  const authorization = headers.get ? headers.get('authorization') : headers.Authorization;
  const token = authorization.replace(/^Bearer /, '');

  const verifier = new OAuth2Client({endpoints: {oauth2FederatedSignonPemCertsUrl: certsUrl}});
  const ticket = await verifier.verifyIdToken({idToken: token, audience});

  // A request through the library's client, which adds the token itself.
  const response = await client.request({url: callUrl, validateStatus: () => true});
  console.log(JSON.stringify({
    verified: ticket.getPayload(),
    call: {status: response.status, body: response.data},
  }));
}

main(...process.argv.slice(2)).catch(err => {
  console.error(err);
  process.exit(1);
});
