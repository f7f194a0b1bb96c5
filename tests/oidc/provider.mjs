// A real OpenID Connect provider (panva's oidc-provider) for the sign-in tests.
// Usage: node provider.mjs PORT ISSUER CLIENT_ID CLIENT_SECRET REDIRECT_URI
// Anyone signs in with any login and password (its development sign-in pages); the login is the
// subject, `<login>@example.com` the email, verified unless the login starts with "unverified".
// PKCE is required of every client, confidential ones included.
import Provider from 'oidc-provider';

const [port, issuer, clientId, clientSecret, redirectUri] = process.argv.slice(2);

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  cookies: { keys: ['only-for-tests'] },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return {
          sub: id, name: id, email: `${id}@example.com`,
          email_verified: !id.startsWith('unverified'),
        };
      },
    };
  },
});
provider.proxy = false;
provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
