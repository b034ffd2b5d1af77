// Google's Node auth library's Impersonated client, its endpoint pointed at frontdoor,
// with the metadata server (GCE_METADATA_HOST) as the source credential.
//
// usage: node impersonated.js ENDPOINT TARGET_EMAIL AUDIENCE
// Prints {"token": …} or {"error": {"status": …, "message": …}}.
'use strict';

const {GoogleAuth, Impersonated} = require('google-auth-library');

async function main(endpoint, targetPrincipal, audience) {
  const sourceClient = await new GoogleAuth().getClient();
  const impersonated = new Impersonated({
    sourceClient,
    targetPrincipal,
    targetScopes: ['https://www.googleapis.com/auth/cloud-platform'],
    delegates: [],
    endpoint,
  });
  try {
    const token = await impersonated.fetchIdToken(audience, {includeEmail: true});
    console.log(JSON.stringify({token}));
  } catch (err) {
    const status = err.response ? err.response.status : err.status;
    console.log(JSON.stringify({error: {status, message: String(err.message)}}));
  }
}

main(...process.argv.slice(2)).catch(err => {
  console.error(err);
  process.exit(1);
});
