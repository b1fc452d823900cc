// panva/oidc-provider, configured as close to the broker as oidc-provider allows without a database,
// for side-by-side load measurements with the broker's own load driver (bench/loadgen).
//
//   NODE_ENV=production PORT=8090 CLIENT_SECRET=... node server.mjs
//   ADAPTER=redis ...                 one process on the Redis adapter (redis-adapter.mjs)
//   WORKERS=2 ...                     node:cluster: a primary forks 2 workers that share the port
//                                     (the primary accepts and hands connections round-robin) and
//                                     state through the Redis adapter (REDIS_URL, default
//                                     redis://127.0.0.1:6379; keys under REDIS_PREFIX); keys and
//                                     cookie secret are made once by the primary and given to both
//
// - issuer http://127.0.0.1:PORT, one confidential client `bench` (client_secret_basic) allowed
//   client_credentials, authorization_code and refresh_token, redirect URI http://127.0.0.1:9/cb (the
//   one bench/loadgen registers and never fetches);
// - access tokens are RFC 9068 JWTs signed ES256 (resource indicators with a default resource);
//   ID tokens RS256; signing keys (ES256 + RS256) generated with `jose` at start;
// - lifetimes as the broker's defaults: access/ID token 300 s, code 60 s, refresh 30 d, SSO 8 h;
// - refresh tokens rotate on every use (oidc-provider revokes the grant when a rotated one is reused);
// - STORAGE: by default oidc-provider's built-in in-memory adapter (an LRU of ~1000 entries per
//   generation, nothing durable, single process); ADAPTER=redis or WORKERS>1: Redis. The broker
//   writes to PostgreSQL + Redis.
// - a second client `bench-userinfo` (same secret): its code exchange gets an opaque access token
//   for the userinfo endpoint (no resource), the only kind oidc-provider's userinfo and
//   introspection endpoints accept (JWT access tokens for a resource are refused by both).
// - No devInteractions: a minimal interaction route stands in for the broker's mock VNeID, which
//   answers at once. GET /interaction/:uid logs in the account named by `login_hint` (default C01)
//   and grants the requested scopes in the same step, then 303s back to the authorization endpoint.
//   Every hop is a GET redirect, so bench/loadgen's login walker (and so its `login` and `refresh`
//   scenarios) drives it unchanged.

import cluster from 'node:cluster';
import { randomBytes } from 'node:crypto';

import * as jose from 'jose';

// OIDC_PROVIDER=v8 runs 8.8.1 (the newest release whose runtime check accepts Node 20) instead of the
// current 9.x (which wants Node 22 LTS and warns on Node 20, but runs).
const MODULE = process.env.OIDC_PROVIDER === 'v8' ? 'oidc-provider-v8' : 'oidc-provider';
const { default: Provider } = await import(MODULE);
const { version: PROVIDER_VERSION } = (
  await import(`${MODULE}/package.json`, { with: { type: 'json' } })
).default;

const PORT = Number.parseInt(process.env.PORT ?? '8090', 10);
const HOST = process.env.HOST ?? '127.0.0.1';
const CLIENT_SECRET = process.env.CLIENT_SECRET;
if (!CLIENT_SECRET) {
  console.error('server.mjs: CLIENT_SECRET must be set');
  process.exit(2);
}
if (!['127.0.0.1', 'localhost', '::1'].includes(HOST)) {
  console.error('server.mjs: HOST must be loopback');
  process.exit(2);
}

const WORKERS = Number.parseInt(process.env.WORKERS ?? '1', 10);
const ADAPTER = WORKERS > 1 ? 'redis' : (process.env.ADAPTER ?? 'memory');
if (!['memory', 'redis'].includes(ADAPTER)) {
  console.error('server.mjs: ADAPTER must be memory or redis');
  process.exit(2);
}
const ISSUER = `http://${HOST}:${PORT}`;
const RESOURCE = 'urn:compare:api';
const REDIRECT_URI = 'http://127.0.0.1:9/cb';

async function signingKey(alg, kid, options = {}) {
  const { privateKey } = await jose.generateKeyPair(alg, { extractable: true, ...options });
  return { ...(await jose.exportJWK(privateKey)), kid, alg, use: 'sig' };
}

// What every process of a cluster must share: signing keys (the first key of an algorithm signs;
// RS256 first, since OIDC makes it the ID-token default), the cookie secret, the Redis key prefix.
async function sharedState() {
  if (process.env.SHARED_STATE) return JSON.parse(process.env.SHARED_STATE);
  return {
    jwks: {
      keys: [
        await signingKey('RS256', 'rs256-1', { modulusLength: 2048 }),
        await signingKey('ES256', 'es256-1'),
      ],
    },
    cookieKey: randomBytes(32).toString('base64url'),
    redisPrefix: process.env.REDIS_PREFIX ?? `oidc-compare-${process.pid}-${randomBytes(4).toString('hex')}:`,
  };
}
const shared = await sharedState();
const LABEL = `oidc-provider ${PROVIDER_VERSION} on Node ${process.version}`;

if (WORKERS > 1 && cluster.isPrimary) {
  // The primary only forks, watches and stops the workers; it serves nothing itself.
  let stopping = false;
  const env = { SHARED_STATE: JSON.stringify(shared) };
  for (let i = 0; i < WORKERS; i += 1) cluster.fork(env);
  let listening = 0;
  cluster.on('listening', () => {
    listening += 1;
    if (listening === WORKERS) {
      console.log(`${LABEL} cluster primary pid ${process.pid}: ${WORKERS} workers (node:cluster) on ${ISSUER}, adapter redis, prefix ${shared.redisPrefix} (NODE_ENV=${process.env.NODE_ENV ?? ''})`);
    }
  });
  cluster.on('exit', (worker, code, signal) => {
    if (!stopping) {
      console.error(`server.mjs: worker ${worker.process.pid} exited (${code ?? signal}); stopping`);
      process.exit(1);
    }
    if (Object.keys(cluster.workers).length === 0) process.exit(0);
  });
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
      stopping = true;
      for (const worker of Object.values(cluster.workers)) worker.process.kill('SIGTERM');
      setTimeout(() => process.exit(0), 3000).unref();
    });
  }
} else {
  await serve();
}

async function serve() {
  const jwks = shared.jwks;
  const adapter = ADAPTER === 'redis'
    ? (await import('./redis-adapter.mjs')).redisAdapter(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', shared.redisPrefix)
    : undefined;

  // Stand-in for the broker's account store: any login_hint is an account with a fixed profile.
  async function findAccount(_ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return {
          sub,
          name: 'Nguyễn Văn A',
          given_name: 'A',
          family_name: 'Nguyễn',
          birthdate: '1990-01-01',
          phone_number: '+84900000000',
          phone_number_verified: true,
        };
      },
    };
  }

  const configuration = {
    clients: [
      {
        client_id: 'bench',
        client_secret: CLIENT_SECRET,
        grant_types: ['client_credentials', 'authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: [REDIRECT_URI],
        token_endpoint_auth_method: 'client_secret_basic',
        // RS256 like the broker's default; oidc-provider also signs one on every refresh (the broker
        // does not), so ID_TOKEN_ALG=ES256 shows how much of a refresh that RSA signature costs.
        id_token_signed_response_alg: process.env.ID_TOKEN_ALG ?? 'RS256',
        scope: 'openid profile phone offline_access api',
      },
      {
        // For userinfo and introspection: see useGrantedResource below.
        client_id: 'bench-userinfo',
        client_secret: CLIENT_SECRET,
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: [REDIRECT_URI],
        token_endpoint_auth_method: 'client_secret_basic',
        id_token_signed_response_alg: process.env.ID_TOKEN_ALG ?? 'RS256',
        scope: 'openid profile phone offline_access api',
      },
    ],
    ...(adapter ? { adapter } : {}),
    jwks,
    cookies: { keys: [shared.cookieKey] },
    findAccount,
    claims: {
      openid: ['sub'],
      profile: ['name', 'given_name', 'family_name', 'birthdate'],
      phone: ['phone_number', 'phone_number_verified'],
    },
    scopes: ['openid', 'offline_access', 'api'],
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      userinfo: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => RESOURCE,
        // `bench`'s tokens are ES256 JWTs for the API, like the broker's; `bench-userinfo`'s code
        // exchange (scope openid, no resource asked) gets oidc-provider's opaque userinfo token.
        useGrantedResource: async (ctx) => ctx.oidc.client?.clientId !== 'bench-userinfo',
        getResourceServerInfo: async (_ctx, resourceIndicator) => {
          if (resourceIndicator !== RESOURCE) {
            throw new Provider.errors.InvalidTarget();
          }
          return {
            scope: 'api',
            audience: RESOURCE,
            accessTokenTTL: 300,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'ES256' } },
          };
        },
      },
    },
    // The broker issues a refresh token to every client allowed the grant, and rotates it on every use.
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: () => true,
    ttl: {
      AccessToken: 300,
      ClientCredentials: 300,
      IdToken: 300,
      AuthorizationCode: 60,
      RefreshToken: 30 * 24 * 3600,
      Session: 8 * 3600,
      Interaction: 600,
      Grant: 30 * 24 * 3600,
    },
    interactions: {
      url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
    },
    // Keep error pages terse, as in production.
    renderError: async (ctx, out) => {
      ctx.type = 'json';
      ctx.body = out;
    },
  };

  const provider = new Provider(ISSUER, configuration);
  provider.proxy = false;

  // The interaction: log in `login_hint` and consent to what was asked, in one step.
  const INTERACTION = /^\/interaction\/([A-Za-z0-9_-]+)$/;
  provider.use(async (ctx, next) => {
    if (ctx.method !== 'GET' || !INTERACTION.test(ctx.path)) {
      await next();
      return;
    }
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    const { prompt, params, session } = details;
    const accountId = session?.accountId ?? String(params.login_hint || 'C01');
    const result = {};
    if (prompt.name === 'login') {
      result.login = { accountId, amr: ['vneid'] };
    }
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId, clientId: params.client_id });
    const wanted = String(params.scope ?? '').split(' ').filter(Boolean);
    grant.addOIDCScope(wanted.filter((s) => s !== 'api').join(' '));
    if (prompt.details?.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(prompt.details?.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    grant.addResourceScope(RESOURCE, 'api');
    result.consent = { grantId: await grant.save() };
    const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, {
      mergeWithLastSubmission: false,
    });
    ctx.status = 303;
    ctx.redirect(returnTo);
  });

  provider.on('server_error', (_ctx, err) => console.error('server_error', err));

  const server = provider.listen(PORT, HOST, () => {
    console.log(`${LABEL} listening on ${ISSUER} (pid ${process.pid}, NODE_ENV=${process.env.NODE_ENV ?? ''}, adapter ${ADAPTER}${cluster.isWorker ? ', cluster worker' : ''})`);
  });
  server.keepAliveTimeout = 65_000;

  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.on(signal, () => {
      server.close(() => process.exit(0));
      setTimeout(() => process.exit(0), 2000).unref();
    });
  }
}
