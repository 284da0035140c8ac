// A real OpenID Connect provider (npm oidc-provider) for jitgate's sign-in
// tests, started by the test harness (tests/src/oidc.rs). Nothing is faked:
// discovery, JWKS, authorization code with PKCE, refresh tokens, the device
// flow and token signing are oidc-provider's own.
//
// What the tests control, through files in IDP_DIR:
//   clients.json   the registered clients (redirect URIs, secrets)
//   accounts.json  accounts by id, each with its claims; re-read at every
//                  sign-in, so a test changes a name or a role between two
//                  sign-ins by rewriting it
//   keys.json      the signing keys (private JWKs); created with one new RSA
//                  key when missing, so deleting it and restarting the
//                  provider rotates the key (a new `kid`)
//
// The sign-in page is replaced by a route that signs in the account named by
// `login_hint` (jitgate sends the email being signed in) and grants every
// scope asked for: the tests are about jitgate, not about a login form.
//
// Usage: IDP_PORT=... IDP_DIR=... [PEER_LISTEN_FD=3] node idp.mjs
// (prints "idp listening on URL"). With PEER_LISTEN_FD it serves on that
// already listening socket, which the test harness bound to IDP_PORT and
// holds (tests/src/port.rs), instead of binding the port itself.

import { createServer } from 'node:http';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Provider from 'oidc-provider';

const port = Number(process.env.IDP_PORT);
const dir = process.env.IDP_DIR;
const issuer = `http://127.0.0.1:${port}`;
const read = (name) => JSON.parse(readFileSync(join(dir, name), 'utf8'));

const keysFile = join(dir, 'keys.json');
if (!existsSync(keysFile)) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' };
  writeFileSync(keysFile, JSON.stringify([jwk]));
}

const provider = new Provider(issuer, {
  clients: read('clients.json'),
  jwks: { keys: JSON.parse(readFileSync(keysFile, 'utf8')) },
  async findAccount(ctx, id) {
    const account = read('accounts.json')[id];
    if (!account) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...account }; } };
  },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups', 'jitgate'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
    jitgate: ['jitgate_role'],
  },
  // Claims of the granted scopes go into the ID token itself.
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: false },
    deviceFlow: { enabled: true },
    revocation: { enabled: true },
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  pkce: { required: () => true },
  cookies: { keys: ['jitgate-test-idp'] },
  ttl: { AccessToken: 600, IdToken: 600, RefreshToken: 86400, Session: 86400, Grant: 86400, Interaction: 600, DeviceCode: 600 },
});
provider.proxy = false;

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params } = details;
  if (prompt.name === 'login') {
    const hint = params.login_hint;
    const accounts = read('accounts.json');
    const accountId = Object.keys(accounts).find((id) => id === hint || accounts[id].email === hint);
    if (!accountId) {
      return provider.interactionFinished(req, res, {
        error: 'access_denied',
        error_description: `no account for login_hint ${hint}`,
      });
    }
    return provider.interactionFinished(req, res, { login: { accountId } }, { mergeWithLastSubmission: false });
  }
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

const handler = provider.callback();
const server = createServer((req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((err) => {
      res.statusCode = 500;
      res.end(String(err));
    });
    return;
  }
  handler(req, res);
});
const listening = () => console.log(`idp listening on ${issuer}`);
if (process.env.PEER_LISTEN_FD) {
  server.listen({ fd: Number(process.env.PEER_LISTEN_FD) }, listening);
} else {
  server.listen(port, '127.0.0.1', listening);
}
