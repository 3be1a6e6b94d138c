// A connection's upstream for the per-caller credentials test
// (tests/tests/all/connections.rs): panva's oidc-provider as the OAuth
// provider, with its development login and consent pages (any login
// name), the authorization-code grant with PKCE and refresh tokens, for
// one confidential client whose redirect URI is the first line read from
// stdin (Moat's address is known only once it listens, and Moat needs the
// provider's first); and, on a second port, an API whose GET /user
// answers only a bearer token the provider issued, with the account it
// belongs to.
//
// Usage: node upstream.mjs, then write the redirect URI and a newline.
// Prints "issuer <url>" and "api <url>" once listening; stops when stdin
// closes.
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

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const redirect = (await lines.next()).value;
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
  // Refresh tokens without offline_access: the connection asks for none.
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
});
web.on('request', provider.callback());
console.log('ready');
// Stop when stdin closes.
for await (const _ of { [Symbol.asyncIterator]: () => lines });
process.exit(0);
