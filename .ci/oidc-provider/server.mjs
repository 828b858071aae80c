// A real OpenID Provider for MedCore's development and tests: panva's oidc-provider (OpenID Certified), on a
// loopback port, with a login page of its own that checks passwords against an accounts file.
//
//   node server.mjs PORT ACCOUNTS_JSON CLIENT_ID CLIENT_SECRET
//
// ACCOUNTS_JSON maps an account id (the subject) to {"password", "name", "email", "groups": [...]}. It is read again
// at every login and every token, so a test changes someone's groups (or removes them) by rewriting the file: the
// change shows at their next sign-in, as at a hospital's provider.
//
// The client is a confidential one (client_secret_basic) whose redirect URI is http://127.0.0.1:<any port>/oauth2callback
// (RFC 8252 loopback rule: the port is ignored), so tests can start MedCore on any free port. `groups` is in the ID
// token (conformIdTokenClaims off), as Entra ID puts it there; the `groups` scope asks for it too, as Okta's does.
// Streamlit asks for prompt=select_account unless told otherwise: this provider treats it as a login prompt.
import { readFileSync } from 'node:fs';
import { randomBytes, timingSafeEqual, createHash } from 'node:crypto';

import Provider, { interactionPolicy } from 'oidc-provider';
import { generateKeyPair, exportJWK } from 'jose';

const [port, accountsFile, clientId, clientSecret] = process.argv.slice(2);
if (!port || !accountsFile || !clientId || !clientSecret) {
  console.error('usage: node server.mjs PORT ACCOUNTS_JSON CLIENT_ID CLIENT_SECRET');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;
const accounts = () => JSON.parse(readFileSync(accountsFile, 'utf8'));

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const digest = (text) => createHash('sha256').update(String(text)).digest();
const samePassword = (a, b) => timingSafeEqual(digest(a), digest(b));

const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const signingKey = { ...(await exportJWK(privateKey)), kid: 'medcore-dev-1', alg: 'RS256', use: 'sig' };

const policy = interactionPolicy.base();
policy.add(new interactionPolicy.Prompt({ name: 'select_account', requestable: true }), 0);

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    application_type: 'native', // loopback redirect URIs on any port (RFC 8252); still a confidential client
    redirect_uris: ['http://127.0.0.1/oauth2callback'],
    post_logout_redirect_uris: ['http://127.0.0.1/oauth2callback'],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  scopes: ['openid', 'profile', 'email', 'groups'],
  claims: { openid: ['sub', 'groups'], profile: ['name'], email: ['email'], groups: ['groups'] },
  conformIdTokenClaims: false,
  async findAccount(ctx, id) {
    const account = accounts()[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, name: account.name, email: account.email, groups: account.groups ?? [] };
      },
    };
  },
  interactions: { policy, url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: {
      enabled: true,
      // No "are you sure" page: the relying party asked to end the session, so the form is sent at once.
      async logoutSource(ctx, form) {
        ctx.body = `<!DOCTYPE html><html><head><title>Signing out</title></head><body>${form}
          <input type="hidden" form="op.logoutForm" name="logout" value="yes">
          <p>Signing out…</p><script>document.forms[0].submit()</script></body></html>`;
      },
    },
  },
  ttl: { Session: 8 * 3600, Interaction: 600, Grant: 8 * 3600, IdToken: 3600, AccessToken: 3600 },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = `<!DOCTYPE html><html><head><title>Sign-in error</title></head><body><h1>Sign-in error</h1>
      <p>${escape(out.error)}: ${escape(out.error_description ?? '')}</p></body></html>`;
  },
});

function loginPage(uid, clientName, error = '') {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>Hospital sign-in</title>
  <style>body{font-family:sans-serif;background:#eef2f6;margin:0}main{max-width:340px;margin:60px auto;background:#fff;
  padding:24px 32px;border-radius:6px;box-shadow:0 2px 6px rgba(0,0,0,.2)}label{display:block;margin-top:12px}
  input{width:100%;padding:6px;box-sizing:border-box}button{margin-top:18px;width:100%;padding:8px;background:#1f5fa8;
  color:#fff;border:0;border-radius:4px;font-size:15px}.error{color:#a00}</style></head><body><main>
  <h1>Hospital sign-in</h1><p>Development identity provider. Signing in to <b>${escape(clientName)}</b>.</p>
  ${error ? `<p class="error">${escape(error)}</p>` : ''}
  <form method="post" action="/interaction/${escape(uid)}/login" autocomplete="off">
    <label>Username <input name="login" autofocus required></label>
    <label>Password <input name="password" type="password" required></label>
    <button type="submit">Sign in</button>
  </form></main></body></html>`;
}

async function formBody(ctx) {
  const chunks = [];
  for await (const chunk of ctx.req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

provider.use(async (ctx, next) => {
  const match = ctx.path.match(/^\/interaction\/([A-Za-z0-9_-]+)(\/login)?$/);
  if (!match) return next();
  ctx.set('Cache-Control', 'no-store');
  const interaction = await provider.interactionDetails(ctx.req, ctx.res);
  const { uid, prompt, params, session } = interaction;
  if (ctx.method === 'GET' && prompt.name === 'consent') { // MedCore is the hospital's own application: no consent page
    const grant = interaction.grantId ? await provider.Grant.find(interaction.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    const grantId = await grant.save();
    const to = await provider.interactionResult(ctx.req, ctx.res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return ctx.redirect(to);
  }
  if (ctx.method === 'GET') {
    ctx.type = 'html';
    ctx.body = loginPage(uid, params.client_id);
    return undefined;
  }
  if (ctx.method === 'POST' && match[2]) {
    const form = await formBody(ctx);
    const login = form.get('login') ?? '';
    const account = Object.hasOwn(accounts(), login) ? accounts()[login] : undefined;
    if (!account || !samePassword(account.password ?? '', form.get('password') ?? '')) {
      ctx.type = 'html';
      ctx.body = loginPage(uid, params.client_id, 'Wrong username or password.');
      return undefined;
    }
    const to = await provider.interactionResult(ctx.req, ctx.res, { login: { accountId: login } },
      { mergeWithLastSubmission: false });
    return ctx.redirect(to);
  }
  return next();
});

provider.listen(Number(port), '127.0.0.1', () => console.log(`oidc-provider listening on ${issuer}`));
