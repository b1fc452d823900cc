// Real logins through a server's authorization endpoint, for bench/compare/side-by-side.sh: each
// login is a fresh browser (own cookie jar) that follows the redirects from /authorize (the broker:
// through the mock VNeID; oidc-provider: through server.mjs's auto-login interaction) to the client's
// redirect URI, checks state and iss, and redeems the code with PKCE. Prints one line per login:
// `access_token<TAB>refresh_token`. The broker's login page is passed the way loadgen passes it (the
// link `<a id="vneid-login" href="…">`); no form page is answered: the plain login needs none.
//
//   CLIENT_SECRET=… node login-tokens.mjs ISSUER CLIENT_ID COUNT [SCOPE] [LOGIN_HINT]
//
// Loopback issuers only; at most 8 logins at a time. Exits non-zero if any login fails.

import { createHash, randomBytes } from 'node:crypto';

const [issuerArg, clientId, countArg, scope = 'openid profile offline_access', loginHint = 'C01'] =
  process.argv.slice(2);
const secret = process.env.CLIENT_SECRET;
const REDIRECT_URI = 'http://127.0.0.1:9/cb';
const PARALLEL = 8;
const MAX_HOPS = 20;

function fail(message) {
  console.error(`login-tokens: ${message}`);
  process.exit(1);
}

if (!issuerArg || !clientId || !countArg || !secret) {
  fail('usage: CLIENT_SECRET=… node login-tokens.mjs ISSUER CLIENT_ID COUNT [SCOPE] [LOGIN_HINT]');
}
const issuerUrl = new URL(issuerArg);
if (!['127.0.0.1', 'localhost', '[::1]'].includes(issuerUrl.hostname)) fail('loopback issuers only');
const count = Number.parseInt(countArg, 10);

const b64url = (bytes) => Buffer.from(bytes).toString('base64url');
const formEncode = (s) => encodeURIComponent(s).replace(/%20/g, '+');
const basic = `Basic ${Buffer.from(`${formEncode(clientId)}:${formEncode(secret)}`).toString('base64')}`;

const discovery = await (await fetch(`${issuerArg.replace(/\/$/, '')}/.well-known/openid-configuration`)).json();

// Cookies by host (ports, paths and attributes ignored: everything is on loopback).
function storeCookies(jar, url, headers) {
  const host = new URL(url).hostname;
  const cookies = jar.get(host) ?? new Map();
  for (const line of headers.getSetCookie()) {
    const [pair, ...attrs] = line.split(';');
    const eq = pair.indexOf('=');
    if (eq <= 0) continue;
    const name = pair.slice(0, eq).trim();
    const expired = attrs.some((a) => /^\s*max-age\s*=\s*(0|-\d+)\s*$/i.test(a) || /^\s*expires=.*1970/i.test(a));
    if (expired) cookies.delete(name);
    else cookies.set(name, pair.slice(eq + 1).trim());
  }
  jar.set(host, cookies);
}

function cookieHeader(jar, url) {
  const cookies = jar.get(new URL(url).hostname);
  if (!cookies || cookies.size === 0) return {};
  return { cookie: [...cookies].map(([k, v]) => `${k}=${v}`).join('; ') };
}

function unescapeHtml(s) {
  return s.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos);/gi, (entity, name) => {
    const n = name.toLowerCase();
    if (n.startsWith('#x')) return String.fromCodePoint(Number.parseInt(n.slice(2), 16));
    if (n.startsWith('#')) return String.fromCodePoint(Number.parseInt(n.slice(1), 10));
    return { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }[n] ?? entity;
  });
}

// The href of the broker's `<a id="vneid-login" href="…">` (attributes in any order, any quotes).
function loginHref(html) {
  for (const [tag] of html.matchAll(/<a\b[^>]*>/gi)) {
    const attrs = Object.fromEntries(
      [...tag.matchAll(/([\w-]+)\s*=\s*("([^"]*)"|'([^']*)'|([^\s>]+))/g)]
        .map((m) => [m[1].toLowerCase(), m[3] ?? m[4] ?? m[5]]),
    );
    if (attrs.id === 'vneid-login' && attrs.href) return unescapeHtml(attrs.href);
  }
  return undefined;
}

async function login() {
  const verifier = b64url(randomBytes(32));
  const challenge = b64url(createHash('sha256').update(verifier).digest());
  const state = b64url(randomBytes(16));
  const authorize = new URL(discovery.authorization_endpoint);
  for (const [k, v] of Object.entries({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: REDIRECT_URI,
    scope,
    state,
    nonce: b64url(randomBytes(16)),
    code_challenge: challenge,
    code_challenge_method: 'S256',
    login_hint: loginHint,
  })) {
    authorize.searchParams.set(k, v);
  }
  const jar = new Map();
  let url = authorize.href;
  for (let hop = 0; hop < MAX_HOPS; hop += 1) {
    if (url.startsWith(REDIRECT_URI)) {
      const back = new URL(url);
      if (back.searchParams.get('error')) throw new Error(`login refused: ${url}`);
      if (back.searchParams.get('state') !== state) throw new Error(`state mismatch: ${url}`);
      const iss = back.searchParams.get('iss');
      if (iss && iss !== discovery.issuer) throw new Error(`iss mismatch: ${url}`);
      return redeem(back.searchParams.get('code'), verifier);
    }
    const response = await fetch(url, { redirect: 'manual', headers: cookieHeader(jar, url) });
    storeCookies(jar, url, response.headers);
    const location = response.headers.get('location');
    if (response.status === 200) {
      const body = await response.text();
      const href = loginHref(body);
      if (!href) throw new Error(`GET ${url}: a page without a#vneid-login: ${body.slice(0, 300)}`);
      url = new URL(href, url).href;
      continue;
    }
    if (response.status < 300 || response.status >= 400 || !location) {
      const body = await response.text();
      throw new Error(`GET ${url}: HTTP ${response.status}, no redirect: ${body.slice(0, 300)}`);
    }
    await response.arrayBuffer().catch(() => {});
    url = new URL(location, url).href;
  }
  throw new Error('too many redirects');
}

async function redeem(code, verifier) {
  const response = await fetch(discovery.token_endpoint, {
    method: 'POST',
    headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, code_verifier: verifier }),
  });
  const body = await response.json().catch(() => ({}));
  if (response.status !== 200 || !body.access_token) {
    throw new Error(`code exchange: HTTP ${response.status}: ${JSON.stringify(body)}`);
  }
  return `${body.access_token}\t${body.refresh_token ?? ''}`;
}

const lines = [];
let next = 0;
await Promise.all(Array.from({ length: Math.min(PARALLEL, count) }, async () => {
  while (next < count) {
    next += 1;
    try {
      lines.push(await login());
    } catch (error) {
      fail(error.message);
    }
  }
}));
process.stdout.write(`${lines.join('\n')}\n`);
