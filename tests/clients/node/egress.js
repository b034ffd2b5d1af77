// Google's Node auth library, unmodified, with only `frontdoor env`'s variables set and a
// key file in GOOGLE_APPLICATION_CREDENTIALS: getIdTokenClient(url) calls the service at its
// run.app URL, and OAuth2Client.verifyIdToken checks the token with Google's default
// certificate URL. Both reach frontdoor through its proxy and local CA.
//
// usage: node egress.js SERVICE_URL
// Prints one JSON object.
const { GoogleAuth, OAuth2Client } = require('google-auth-library');

async function main() {
  const url = process.argv[2];
  const client = await new GoogleAuth().getIdTokenClient(url);
  const response = await client.request({ url: url + '/whoami' });
  const token = await client.idTokenProvider.fetchIdToken(url);
  const ticket = await new OAuth2Client().verifyIdToken({ idToken: token, audience: url });
  let tampered = 'accepted';
  try {
    const forged = token.slice(0, -4) + (token.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    await new OAuth2Client().verifyIdToken({ idToken: forged, audience: url });
  } catch (e) {
    // Refused for its signature, not some other failure (the certificates unreachable).
    tampered = 'refused: ' + e.message.split(':')[0];
  }
  console.log(JSON.stringify({ status: response.status, email: ticket.getPayload().email, tampered }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
