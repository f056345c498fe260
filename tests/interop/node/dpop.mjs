// openid-client with DPoP (RFC 9449), as a Node service of a team would use it: discover the
// authorization server, authenticate with private_key_jwt, exchange a token with a DPoP proof
// (openid-client answers use_dpop_nonce itself), then call a protected resource with the bound
// token and a fresh proof (fetchProtectedResource).
//
// Input: one JSON object on stdin:
//   {issuer, clientId, privateKeyPem, alg, dpopKeyPem, subjectToken, resource?, audience?,
//    scope?, call?: {url, method, body}}
// Output: one JSON object on stdout: {ok: true, response, call?: {status, body, challenge}} or
//   {ok: false, error, error_description, status}. Exit 0 either way; 2 on a bug.
import { createPrivateKey, createPublicKey, webcrypto } from 'node:crypto';
import * as client from 'openid-client';

const ALGORITHMS = {
  RS256: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
  ES256: { name: 'ECDSA', namedCurve: 'P-256' },
};

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

async function importPrivate(pem, alg, extractable) {
  const der = createPrivateKey(pem).export({ type: 'pkcs8', format: 'der' });
  return webcrypto.subtle.importKey('pkcs8', der, ALGORITHMS[alg], extractable, ['sign']);
}

async function dpopKeyPair(pem) {
  const privateKey = await importPrivate(pem, 'ES256', false);
  const spki = createPublicKey(createPrivateKey(pem)).export({ type: 'spki', format: 'der' });
  const publicKey = await webcrypto.subtle.importKey('spki', spki, ALGORITHMS.ES256, true,
                                                    ['verify']);
  return { privateKey, publicKey };
}

async function main() {
  const input = await readStdin();
  const key = await importPrivate(input.privateKeyPem, input.alg, false);
  const config = await client.discovery(
    new URL(input.issuer), input.clientId, {}, client.PrivateKeyJwt(key),
    { algorithm: 'oauth2', execute: [client.allowInsecureRequests] },
  );
  const DPoP = client.getDPoPHandle(config, await dpopKeyPair(input.dpopKeyPem));
  const parameters = {
    subject_token: input.subjectToken,
    subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
  };
  for (const name of ['audience', 'resource', 'scope']) {
    if (input[name]) parameters[name] = input[name];
  }
  let response;
  try {
    response = await client.genericGrantRequest(
      config, 'urn:ietf:params:oauth:grant-type:token-exchange', parameters, { DPoP });
  } catch (error) {
    process.stdout.write(JSON.stringify({
      ok: false, error: error.error ?? error.code ?? error.name,
      error_description: error.error_description ?? error.message, status: error.status ?? null,
    }));
    return;
  }
  const out = { ok: true, response };
  if (input.call) {
    const answer = await client.fetchProtectedResource(
      config, response.access_token, new URL(input.call.url), input.call.method,
      input.call.body === undefined ? undefined : JSON.stringify(input.call.body),
      new Headers({ 'content-type': 'application/json' }),
      { DPoP });
    out.call = { status: answer.status, body: await answer.json(),
                 challenge: answer.headers.get('www-authenticate') };
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((error) => {
  process.stderr.write(`${error.stack ?? error}\n`);
  process.exit(2);
});
