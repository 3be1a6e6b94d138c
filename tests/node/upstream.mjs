// A connection's upstream for the per-caller credentials test
// (tests/tests/all/connections.rs): panva's oidc-provider as the OAuth
// provider, with its development login and consent pages (any login
// name), the authorization-code grant with PKCE and refresh tokens, for
// one confidential client; on a second port, an API whose GET /user
// answers only a bearer token the provider issued, with the account it
// belongs to; and on a third, a second oidc-provider as the MCP
// endpoint's own authorization server, where Moat signs a browser's user
// in (client `moat`, ID tokens signed with the test's Ed25519 key, with
// which the test also signs the MCP access tokens).
//
// Usage: node upstream.mjs, then write one line of JSON:
// {"redirect": <the connection's redirect URI>, "verify": <Moat's
// /connect/verify>, "key": <the private JWK>} (Moat's address is known
// only once it listens, and Moat needs the issuers' first). Prints
// "issuer <url>", "api <url>" and "mcp <url>" once listening, "ready"
// once configured; stops when stdin closes.
import { createHash, generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';
import { createInterface } from 'node:readline';
import Provider from 'oidc-provider';
const jwk = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });

const listen = async (server) => {
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${server.address().port}`;
};

const web = createServer();
const issuer = await listen(web);
const mcpWeb = createServer();
const mcpIssuer = await listen(mcpWeb);
let provider;

const api = createServer(async (req, res) => {
  const auth = req.headers.authorization ?? '';
  const token = auth.startsWith('Bearer ') ? auth.slice(7) : '';
  const found = token && provider ? await provider.AccessToken.find(token) : undefined;
  if (!found) {
    res.writeHead(401, { 'content-type': 'text/plain' });
    res.end('who are you?');
    return;
  }
  // Which token it was, without repeating it.
  const hash = createHash('sha256').update(token).digest('hex').slice(0, 12);
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end(`login=${found.accountId} token=${hash}`);
});
const apiUrl = await listen(api);
console.log(`issuer ${issuer}`);
console.log(`api ${apiUrl}`);
console.log(`mcp ${mcpIssuer}`);

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const { redirect, verify, key } = JSON.parse((await lines.next()).value);
const findAccount = async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) });
provider = new Provider(issuer, {
  jwks: { keys: [{ ...jwk, kid: 'es256-1', alg: 'ES256', use: 'sig' }] },
  clients: [
    {
      client_id: 'moat-upstream',
      client_secret: 'upstream-secret-0123456789',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: [redirect],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
    },
  ],
  scopes: ['openid', 'repo'],
  features: { revocation: { enabled: true } },
  // Refresh tokens without offline_access: the connection asks for none.
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  findAccount,
});
web.on('request', provider.callback());
const mcp = new Provider(mcpIssuer, {
  jwks: { keys: [{ ...key, use: 'sig' }] },
  clients: [
    {
      client_id: 'moat',
      client_secret: 'sign-in-secret-0123456789',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: [verify],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'EdDSA',
    },
  ],
  // Its own cookie names: a browser keeps one jar per host, not per port.
  cookies: { names: { session: '_mcp_session', interaction: '_mcp_interaction', resume: '_mcp_resume' } },
  findAccount,
});
mcpWeb.on('request', mcp.callback());
console.log('ready');
// Stop when stdin closes.
for await (const _ of { [Symbol.asyncIterator]: () => lines });
process.exit(0);
