// openid-client doing what a Node service of a team would: discover the authorization server
// (RFC 8414), authenticate with private_key_jwt, and exchange a token (RFC 8693).
//
// Input: one JSON object on stdin:
//   {issuer, clientId, privateKeyPem, alg, subjectToken, audience?, resource?, scope?}
// Output: one JSON object on stdout: {ok: true, response, assertion} or
//   {ok: false, error, error_description, reason, status}. Exit 0 either way; 2 on a bug.
import { createPrivateKey, webcrypto } from 'node:crypto';
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

async function main() {
  const input = await readStdin();
  const der = createPrivateKey(input.privateKeyPem).export({ type: 'pkcs8', format: 'der' });
  const key = await webcrypto.subtle.importKey('pkcs8', der, ALGORITHMS[input.alg], false,
                                               ['sign']);
  let assertion = null;
  const config = await client.discovery(
    new URL(input.issuer), input.clientId, {}, client.PrivateKeyJwt(key, {
      [client.modifyAssertion]: (_header, payload) => { assertion = payload; },
    }),
    { algorithm: 'oauth2', execute: [client.allowInsecureRequests] },
  );
  const parameters = {
    subject_token: input.subjectToken,
    subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
  };
  for (const name of ['audience', 'resource', 'scope']) {
    if (input[name]) parameters[name] = input[name];
  }
  try {
    const response = await client.genericGrantRequest(
      config, 'urn:ietf:params:oauth:grant-type:token-exchange', parameters);
    process.stdout.write(JSON.stringify({ ok: true, response, assertion }));
  } catch (error) {
    process.stdout.write(JSON.stringify({
      ok: false, error: error.error ?? error.code ?? error.name,
      error_description: error.error_description ?? error.message,
      reason: error.cause?.reason ?? null, status: error.status ?? null,
    }));
  }
}

main().catch((error) => {
  process.stderr.write(`${error.stack ?? error}\n`);
  process.exit(2);
});
