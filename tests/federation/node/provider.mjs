// A real OpenID Provider (panva/oidc-provider, OpenID Certified) for tests/federation: it
// issues RFC 9068 JWT access tokens through the client_credentials grant, for one resource
// (InfraBot's expected audience) and the URN scopes that resource defines.
//
// Input: one JSON object on stdin: {clients: [{client_id, client_secret}], resource, scopes}.
// Output: one line of JSON on stdout once it listens: {issuer}. It serves until killed.
import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';
import Provider from 'oidc-provider';

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

const input = await readStdin();
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'op-test-1', use: 'sig', alg: 'RS256' };

const server = createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  jwks: { keys: [jwk] },
  clients: input.clients.map((c) => ({
    client_id: c.client_id, client_secret: c.client_secret,
    grant_types: ['client_credentials'], redirect_uris: [], response_types: [],
    token_endpoint_auth_method: 'client_secret_post',
  })),
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => input.resource,
      getResourceServerInfo: (_ctx, indicator) => {
        if (indicator !== input.resource) throw new Provider.errors.InvalidTarget();
        return { scope: input.scopes.join(' '), audience: input.resource,
                 accessTokenFormat: 'jwt', accessTokenTTL: 300, jwt: { sign: { alg: 'RS256' } } };
      },
    },
  },
});
server.on('request', provider.callback());
process.stdout.write(`${JSON.stringify({ issuer })}\n`);
process.on('SIGTERM', () => server.close(() => process.exit(0)));
