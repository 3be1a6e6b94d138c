// A standard OpenID Provider (panva's oidc-provider, certified by the
// OpenID Foundation) on 127.0.0.1, for the interop test. It issues JWT
// access tokens to a confidential client by the client-credentials grant,
// with the audience taken from the RFC 8707 `resource` parameter.
//
// Usage: node provider.mjs <allowed resource>...
// Prints "issuer <url>" once listening; stops when stdin closes.
import { generateKeyPairSync } from 'node:crypto';
import Provider, { errors } from 'oidc-provider';

const resources = new Set(process.argv.slice(2));
const jwk = (type, options) => generateKeyPairSync(type, options).privateKey.export({ format: 'jwk' });
const keys = [
  { ...jwk('ec', { namedCurve: 'P-256' }), kid: 'es256-1', alg: 'ES256', use: 'sig' },
  { ...jwk('rsa', { modulusLength: 2048 }), kid: 'rs256-1', alg: 'RS256', use: 'sig' },
];

const server = (await import('node:http')).createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  jwks: { keys },
  clients: [
    {
      client_id: 'moat-interop',
      client_secret: 'interop-secret-0123456789',
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: 'tools:read tools:write',
    },
  ],
  scopes: ['tools:read', 'tools:write'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // Without `resource`, no audience: the token is refused by any
      // resource server that checks `aud`.
      defaultResource: () => undefined,
      getResourceServerInfo: (ctx, resource) => {
        if (!resources.has(resource)) throw new errors.InvalidTarget();
        return {
          scope: 'tools:read tools:write',
          audience: resource,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
});
server.on('request', provider.callback());
console.log(`issuer ${issuer}`);
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
