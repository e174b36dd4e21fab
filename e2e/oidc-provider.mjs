// A real OpenID Provider for the console's single sign-on test: panva's oidc-provider (a
// certified implementation) on a free loopback port, with one static confidential client and
// the accounts the test chooses. Its built-in development login and consent pages accept any
// password: the login typed is the account id (`sub`).
//
// Usage: node oidc-provider.mjs --host localhost --client-id ID --client-secret SECRET \
//          --redirect-uri URL --accounts JSON [--claims-in-id-token true|false]
// JSON maps an account id to its claims, e.g. {"alice":{"email":"alice@example.org",
// "email_verified":true,"preferred_username":"alice"}}. With --claims-in-id-token false (the
// default of the OpenID Connect core specification when an access token is issued) the
// profile's claims are only in the userinfo answer. Prints one line once it listens,
// {"issuer":"http://localhost:PORT"}, then serves until it is killed or its stdin closes.

import { createServer } from 'node:http';
import { randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && process.argv[i + 1] !== undefined) return process.argv[i + 1];
  if (fallback !== undefined) return fallback;
  throw new Error(`missing --${name}`);
}

const host = arg('host', 'localhost');
const clientId = arg('client-id');
const clientSecret = arg('client-secret');
const redirectUri = arg('redirect-uri');
const accounts = JSON.parse(arg('accounts'));
const claimsInIdToken = arg('claims-in-id-token', 'true') === 'true';

const server = createServer();
// Listen first, on the loopback address only: the issuer URL names the port.
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const { port } = server.address();
const issuer = `http://${host}:${port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      response_types: ['code'],
      grant_types: ['authorization_code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  // Every client must use PKCE (S256), as the console does.
  pkce: { required: () => true },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['preferred_username', 'name'],
  },
  // false: the ID token carries the scopes' claims itself; true: only the userinfo answer does.
  conformIdTokenClaims: !claimsInIdToken,
  async findAccount(_ctx, sub) {
    const claims = accounts[sub];
    if (!claims) return undefined;
    return { accountId: sub, claims: async () => ({ sub, ...claims }) };
  },
  cookies: { keys: [randomBytes(32).toString('hex')] },
});
server.on('request', provider.callback());

process.stdout.write(`${JSON.stringify({ issuer })}\n`);
// Ends with its parent: the test closes stdin (or kills the process) when it is done.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
