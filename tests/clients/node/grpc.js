// A gRPC client in Node: @grpc/grpc-js over TLS to HOST:443, with google-auth-library's
// ID-token client for https://HOST as call credentials (the metadata server, on Cloud Run).
// Messages are raw bytes (identity serializers, no protobuf): the transport and the
// identity are under test. Its environment is only what `frontdoor env` sets.
//
// usage: node grpc.js HOST CASE, CASE one of
//   kinds              the four method kinds, trailers and a client deadline
//   unary              one unary call
//   no-token           one unary call without call credentials
//   google-credential  one unary call with grpc-js's own createFromGoogleCredential, which
//                      sends no token with google-auth-library 10 (grpc/grpc-node#2993:
//                      it reads the headers as a plain object, and they are a Headers now)
// Prints one JSON object: what each call answered, or its status code and details.
const grpc = require('@grpc/grpc-js');
const { GoogleAuth } = require('google-auth-library');

const PROBE = '/frontdoor.test.Probe/';
const same = (b) => b;

async function channel(host, which) {
  const ssl = grpc.credentials.createSsl();
  if (which === 'no-token') {
    return new grpc.Client(`${host}:443`, ssl);
  }
  const idTokens = await new GoogleAuth().getIdTokenClient(`https://${host}`);
  const perCall = which === 'google-credential'
    ? grpc.credentials.createFromGoogleCredential(idTokens)
    : grpc.credentials.createFromMetadataGenerator((params, callback) => {
      idTokens.getRequestHeaders(params.service_url).then((headers) => {
        const metadata = new grpc.Metadata();
        metadata.add('authorization', headers.get('authorization'));
        callback(null, metadata);
      }, callback);
    });
  return new grpc.Client(`${host}:443`, grpc.credentials.combineChannelCredentials(ssl, perCall));
}

const deadline = (ms) => ({ deadline: Date.now() + ms });

// The answer with its trailing metadata: grpc-js calls back with the answer, then emits
// the status that carries the trailers.
function unary(client, method, message, options = deadline(20000)) {
  return new Promise((resolve, reject) => {
    let result;
    const call = client.makeUnaryRequest(PROBE + method, same, same, Buffer.from(message),
      new grpc.Metadata(), options, (err, answer) => { result = { err, answer }; });
    call.on('status', (s) => {
      if (result.err) reject(result.err);
      else resolve({ answer: result.answer, trailing: s.metadata.getMap() });
    });
  });
}

const failed = (e) => ({ code: grpc.status[e.code], details: e.details });

async function kinds(client) {
  const out = {};
  out.unary = JSON.parse((await unary(client, 'Unary', 'hello')).answer);

  out.server_stream = await new Promise((resolve, reject) => {
    const got = [];
    const call = client.makeServerStreamRequest(PROBE + 'ServerStream', same, same,
      Buffer.from('{"count": 5, "size": 3}'), new grpc.Metadata(), deadline(20000));
    call.on('data', (m) => got.push(m.toString()));
    call.on('error', reject);
    call.on('end', () => resolve(got));
  });

  out.client_stream = await new Promise((resolve, reject) => {
    const call = client.makeClientStreamRequest(PROBE + 'ClientStream', same, same,
      new grpc.Metadata(), deadline(20000), (err, answer) => (err ? reject(err) : resolve(answer.toString())));
    for (const part of ['a'.repeat(10), 'b'.repeat(20), 'c'.repeat(30)]) call.write(Buffer.from(part));
    call.end();
  });

  // Each message goes only once the answer to the one before has arrived.
  out.bidi = await new Promise((resolve, reject) => {
    const echoes = [];
    const call = client.makeBidiStreamRequest(PROBE + 'Bidi', same, same, new grpc.Metadata(), deadline(20000));
    call.on('data', (m) => {
      echoes.push(m.toString());
      if (echoes.length < 3) call.write(Buffer.from(String(echoes.length + 1)));
      else call.end();
    });
    call.on('error', reject);
    call.on('end', () => resolve(echoes));
    call.write(Buffer.from('1'));
  });

  const { answer, trailing } = await unary(client, 'Trailers', '');
  out.trailers = { answer: answer.toString(), trailing: { 'x-probe-trailer': trailing['x-probe-trailer'] } };

  out.deadline = await unary(client, 'Slow', '{"seconds": 5}', deadline(500)).then(
    () => ({ code: 'OK' }), failed);
  return out;
}

async function main() {
  const [host, which] = process.argv.slice(2);
  const client = await channel(host, which);
  let out;
  if (which === 'kinds') {
    out = await kinds(client);
  } else {
    out = await unary(client, 'Unary', 'hello').then(
      ({ answer }) => ({ code: 'OK', answer: JSON.parse(answer) }), failed);
  }
  client.close();
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
