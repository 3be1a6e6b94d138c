// A connection's upstream for the per-caller credentials test
// (tests/tests/all/connections.rs): panva's oidc-provider as the OAuth
// provider, with its development login and consent pages (any login
// name), the authorization-code grant with PKCE and refresh tokens, for
// one confidential client whose redirect URI is the first argument; and,
// on a second port, an API whose GET /user answers only a bearer token
// the provider issued, with the account it belongs to.
//
// Usage: node upstream.mjs <redirect uri>
// Prints "issuer <url>" and "api <url>" once listening; stops when stdin
// closes.
import { createHash, generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';
import Provider from 'oidc-provider';

const [redirect] = process.argv.slice(2);
const jwk = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });

const listen = async (server) => {
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${server.address().port}`;
};

const web = createServer();
const issuer = await listen(web);
const provider = new Provider(issuer, {
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
  // Refresh tokens without offline_access: the connection asks for none.
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
});
web.on('request', provider.callback());

const api = createServer(async (req, res) => {
  const auth = req.headers.authorization ?? '';
  const token = auth.startsWith('Bearer ') ? auth.slice(7) : '';
  const found = token ? await provider.AccessToken.find(token) : undefined;
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
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
