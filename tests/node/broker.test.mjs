// Real-client test of the broker with panva's `openid-client` (v6).
//
// Run through tests/node/run.sh, which starts the mock VNeID and the broker, registers a
// confidential client (client_secret_basic) and exports ISSUER, CLIENT_ID, CLIENT_SECRET and
// REDIRECT_URI. The browser part of the login is played by `fetch` with `redirect: 'manual'` and
// a small cookie jar; everything from the redirect back to the RP onwards is openid-client.

import assert from 'node:assert/strict'
import { createPublicKey, verify as verifySignature } from 'node:crypto'
import { before, describe, test } from 'node:test'

import * as client from 'openid-client'

const env = (name) => {
  const value = process.env[name]
  if (!value) {
    throw new Error(`${name} is not set: run this test through tests/node/run.sh`)
  }
  return value
}

const ISSUER = env('ISSUER')
const CLIENT_ID = env('CLIENT_ID')
const CLIENT_SECRET = env('CLIENT_SECRET')
const REDIRECT_URI = env('REDIRECT_URI')

const SCOPE = 'openid profile'
// Test citizen C01 of devkit/data/citizens-vneid.json; the mock VNeID picks it at once.
const LOGIN_HINT = 'C01'
const C01 = { name: 'Võ Hữu Tài', birthdate: '1985-03-12' }
const ACR_LOA2 = 'urn:vn:hue:broker:loa:2'
const TIMEOUT = 30_000

/** Discovery with client_secret_basic over plain http on loopback, ID token signatures checked. */
async function configure(secret = CLIENT_SECRET) {
  return client.discovery(
    new URL(ISSUER),
    CLIENT_ID,
    { id_token_signed_response_alg: 'RS256' },
    client.ClientSecretBasic(secret),
    { execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks] },
  )
}

// ---------------------------------------------------------------------------------------------
// The browser: follows redirects by hand and keeps cookies per host (RFC 6265: a cookie is
// scoped to the host name, not the port, so broker and mock on 127.0.0.1 share one jar, as in
// a real browser).

class CookieJar {
  #hosts = new Map() // hostname -> Map(name -> { value, path })

  store(url, response) {
    const setCookies = response.headers.getSetCookie()
    const parsed = []
    for (const line of setCookies) {
      const [pair, ...attrs] = line.split(';').map((s) => s.trim())
      const eq = pair.indexOf('=')
      const name = pair.slice(0, eq)
      const value = pair.slice(eq + 1)
      const attributes = {}
      for (const attr of attrs) {
        const i = attr.indexOf('=')
        const key = (i < 0 ? attr : attr.slice(0, i)).toLowerCase()
        attributes[key] = i < 0 ? true : attr.slice(i + 1)
      }
      let path = attributes.path
      if (typeof path !== 'string' || !path.startsWith('/')) {
        // RFC 6265 §5.1.4 default-path: the directory of the request path.
        const dir = url.pathname.slice(0, url.pathname.lastIndexOf('/'))
        path = dir === '' ? '/' : dir
      }
      const host = this.#host(url.hostname)
      if (attributes['max-age'] !== undefined && Number(attributes['max-age']) <= 0) {
        host.delete(name)
      } else {
        host.set(name, { value, path })
      }
      parsed.push({ name, value, attributes })
    }
    return parsed
  }

  header(url) {
    const pairs = []
    for (const [name, { value, path }] of this.#host(url.hostname)) {
      const p = url.pathname
      const matches =
        p === path || (p.startsWith(path) && (path.endsWith('/') || p[path.length] === '/'))
      if (matches) pairs.push(`${name}=${value}`)
    }
    return pairs.join('; ')
  }

  #host(hostname) {
    if (!this.#hosts.has(hostname)) this.#hosts.set(hostname, new Map())
    return this.#hosts.get(hostname)
  }
}

const where = (url) => `${url.origin}${url.pathname}`

/**
 * Plays the user agent from the RP's authorization URL to the redirect back to the RP, which it
 * captures and never fetches. Returns the callback URL and the hops taken.
 */
async function browse(authorizationUrl) {
  const jar = new CookieJar()
  const hops = []
  const rp = new URL(REDIRECT_URI)
  let url = new URL(authorizationUrl)
  for (let i = 0; i < 10; i++) {
    const cookie = jar.header(url)
    const response = await fetch(url, {
      redirect: 'manual',
      headers: cookie ? { cookie } : {},
    })
    const cookies = jar.store(url, response)
    const location = response.headers.get('location')
    const hop = { url, status: response.status, sentCookies: cookie, cookies, location }
    hops.push(hop)
    const trail = () =>
      hops.map((h) => `  ${h.status} ${where(h.url)}${h.location ? ` -> ${h.location}` : ''}`).join('\n')
    if (![301, 302, 303, 307, 308].includes(response.status) || !location) {
      const body = (await response.text()).replace(/\s+/g, ' ').slice(0, 600)
      assert.fail(
        `the login stopped at ${where(url)} with HTTP ${response.status} instead of a redirect.\n` +
          `hops so far:\n${trail()}\nbody: ${body}`,
      )
    }
    await response.body?.cancel()
    const next = new URL(location, url)
    if (where(next) === where(rp)) {
      return { callbackUrl: next, hops, trail: trail() }
    }
    url = next
  }
  assert.fail(`no redirect back to ${REDIRECT_URI} after 10 hops:\n${hops.map((h) => where(h.url)).join('\n')}`)
}

/** A complete login of test citizen C01, as an RP would start and a browser would follow it. */
async function login(config) {
  const pkceCodeVerifier = client.randomPKCECodeVerifier()
  const codeChallenge = await client.calculatePKCECodeChallenge(pkceCodeVerifier)
  const state = client.randomState()
  const nonce = client.randomNonce()
  const authorizationUrl = client.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT_URI,
    scope: SCOPE,
    code_challenge: codeChallenge,
    code_challenge_method: 'S256',
    state,
    nonce,
    login_hint: LOGIN_HINT,
  })
  const { callbackUrl, hops, trail } = await browse(authorizationUrl)
  return { callbackUrl, hops, trail, checks: { pkceCodeVerifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true } }
}

/** Logs in and redeems the code. */
async function loginAndRedeem(config) {
  const flow = await login(config)
  const tokens = await client.authorizationCodeGrant(config, flow.callbackUrl, flow.checks)
  return { ...flow, tokens }
}

/**
 * Awaits a promise that must fail with the given OAuth error code; returns the HTTP status.
 * Understands openid-client's ResponseBodyError (error in the JSON body) and
 * WWWAuthenticateChallengeError (error in the challenge, or in the body behind it).
 */
async function expectOAuthError(promise, expected, what) {
  let err
  try {
    const value = await promise
    assert.fail(`${what}: expected the broker to answer ${expected}, but it succeeded: ${JSON.stringify(value)}`)
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e
    err = e
  }
  let code = err.error
  if (code === undefined && err instanceof client.WWWAuthenticateChallengeError) {
    code = err.cause?.find((c) => c.parameters?.error)?.parameters.error
    if (code === undefined && err.response && !err.response.bodyUsed) {
      code = await err.response
        .json()
        .then((body) => body.error)
        .catch(() => undefined)
    }
  }
  assert.equal(
    code,
    expected,
    `${what}: expected error ${expected}, got ${code ?? 'no OAuth error code'} ` +
      `(${err.name}: ${err.message}; status ${err.status ?? '?'}; ${err.error_description ?? ''})`,
  )
  return err
}

function decodeJwt(jwt) {
  const [h, p, s] = jwt.split('.')
  const json = (part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'))
  return { header: json(h), payload: json(p), signingInput: `${h}.${p}`, signature: Buffer.from(s, 'base64url') }
}

// ---------------------------------------------------------------------------------------------

describe('broker with openid-client', () => {
  let config

  before(async () => {
    config = await configure()
  })

  test('discovery describes the broker', { timeout: TIMEOUT }, () => {
    const meta = config.serverMetadata()
    assert.equal(meta.issuer, ISSUER, 'issuer in the discovery document')
    assert.ok(meta.supportsPKCE('S256'), 'code_challenge_methods_supported must include S256')
    assert.equal(
      meta.authorization_response_iss_parameter_supported,
      true,
      'authorization_response_iss_parameter_supported (RFC 9207)',
    )
    assert.ok(meta.id_token_signing_alg_values_supported?.includes('RS256'), 'RS256 ID tokens')
    for (const endpoint of ['authorization_endpoint', 'token_endpoint', 'userinfo_endpoint', 'jwks_uri', 'revocation_endpoint']) {
      assert.ok(meta[endpoint]?.startsWith(`${ISSUER}/`), `${endpoint} under the issuer: ${meta[endpoint]}`)
    }
  })

  test('full login through the mock VNeID, code grant, ID token, userinfo', { timeout: TIMEOUT }, async () => {
    const flow = await login(config)
    const { hops, callbackUrl } = flow

    // The browser went broker /authorize -> VNeID /authorize -> broker /callback/vneid -> RP.
    const broker = new URL(ISSUER)
    const upstream = new URL(hops[1]?.url ?? 'http://invalid')
    assert.deepEqual(
      hops.map((h) => where(h.url)),
      [`${broker.origin}/authorize`, `${upstream.origin}/authorize`, `${broker.origin}/callback/vneid`],
      `unexpected redirect chain:\n${flow.trail}`,
    )
    assert.notEqual(upstream.origin, broker.origin, 'the second hop must leave the broker for the upstream')
    for (const h of hops) {
      assert.equal(h.status, 303, `${where(h.url)} should answer 303 See Other:\n${flow.trail}`)
    }
    assert.equal(upstream.searchParams.get('login_hint'), LOGIN_HINT, 'login_hint forwarded to the upstream')

    // The pending-login binding cookie, then the SSO session cookie.
    // One binding cookie per pending login, named after its state (cookie tossing cannot fix it).
    const binding = hops[0].cookies.find((c) => c.name.startsWith('broker_login_'))
    assert.ok(binding, `/authorize must set broker_login_…; Set-Cookie: ${JSON.stringify(hops[0].cookies)}`)
    assert.equal(binding.attributes.path, '/', 'binding cookie Path')
    assert.ok(binding.attributes.httponly, 'binding cookie must be HttpOnly')
    assert.match(String(binding.attributes.samesite), /^lax$/i, 'binding cookie SameSite=Lax')
    assert.ok(
      hops[2].sentCookies.includes(`${binding.name}=${binding.value}`),
      `the callback request must carry ${binding.name} (sent: "${hops[2].sentCookies}")`,
    )
    const session = hops[2].cookies.find((c) => c.name === 'broker_session')
    assert.ok(session, `/callback/vneid must set broker_session; Set-Cookie: ${JSON.stringify(hops[2].cookies)}`)
    assert.equal(session.attributes.path, '/', 'broker_session Path')
    assert.ok(session.attributes.httponly, 'broker_session must be HttpOnly')

    // The authorization response (RFC 6749 §4.1.2, RFC 9207).
    assert.ok(callbackUrl.searchParams.get('code'), `no code in ${callbackUrl}`)
    assert.equal(callbackUrl.searchParams.get('state'), flow.checks.expectedState, 'state echoed')
    assert.equal(callbackUrl.searchParams.get('iss'), ISSUER, 'iss in the authorization response (RFC 9207)')

    // openid-client checks state, iss, PKCE (by the server), nonce, and the ID token's signature
    // against the JWKS (enableNonRepudiationChecks), iss, aud, exp, iat, at_hash.
    const tokens = await client.authorizationCodeGrant(config, callbackUrl, flow.checks)
    assert.equal(tokens.token_type, 'bearer', 'token_type')
    assert.ok(tokens.access_token, 'access_token')
    assert.ok(tokens.refresh_token, 'refresh_token (the client may use the refresh_token grant)')
    assert.ok(tokens.expires_in > 0, `expires_in ${tokens.expires_in}`)
    assert.deepEqual(tokens.scope?.split(' ').sort(), SCOPE.split(' ').sort(), 'granted scope')

    const claims = tokens.claims()
    assert.ok(claims, 'an ID token was returned')
    assert.ok(typeof claims.sub === 'string' && claims.sub.length > 0, `sub: ${claims.sub}`)
    assert.equal(claims.iss, ISSUER, 'iss')
    assert.equal(claims.aud, CLIENT_ID, 'aud')
    assert.equal(claims.nonce, flow.checks.expectedNonce, 'nonce')
    assert.equal(claims.name, C01.name, 'name from VNeID (HoVaTen)')
    assert.equal(claims.birthdate, C01.birthdate, 'birthdate from VNeID (NgayThangNamSinh, normalised)')
    assert.equal(claims.acr, ACR_LOA2, 'acr for a level-2 VNeID account')
    assert.ok(typeof claims.auth_time === 'number', 'auth_time')
    assert.ok(claims.sid, 'sid')

    // Check the signature independently too: RS256, by a key of the published JWKS.
    const idToken = decodeJwt(tokens.id_token)
    assert.equal(idToken.header.alg, 'RS256', 'ID token alg')
    const jwks = await (await fetch(config.serverMetadata().jwks_uri)).json()
    const jwk = jwks.keys.find((k) => k.kid === idToken.header.kid)
    assert.ok(jwk, `kid ${idToken.header.kid} is not in the JWKS (${jwks.keys.map((k) => k.kid).join(', ')})`)
    const key = createPublicKey({ key: jwk, format: 'jwk' })
    const data = Buffer.from(idToken.signingInput)
    assert.ok(verifySignature('sha256', data, key, idToken.signature), 'ID token RS256 signature against the JWKS')
    const tampered = Buffer.from(idToken.signature)
    tampered[tampered.length - 1] ^= 1
    assert.ok(!verifySignature('sha256', data, key, tampered), 'a tampered signature must not verify (sanity)')

    const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub)
    assert.equal(userinfo.sub, claims.sub, 'userinfo sub')
    assert.equal(userinfo.name, C01.name, 'userinfo name')
    assert.equal(userinfo.birthdate, C01.birthdate, 'userinfo birthdate')
  })

  test('the same VNeID identity logs in to the same account', { timeout: TIMEOUT }, async () => {
    const first = await loginAndRedeem(config)
    const second = await loginAndRedeem(config)
    assert.equal(second.tokens.claims().sub, first.tokens.claims().sub, 'sub is stable across logins')
    assert.notEqual(second.tokens.claims().sid, first.tokens.claims().sid, 'each browser login gets its own sid')
  })

  test('refresh rotates the refresh token; the old one is refused and reuse revokes the family', { timeout: TIMEOUT }, async () => {
    const { tokens } = await loginAndRedeem(config)
    const sub = tokens.claims().sub

    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token)
    assert.ok(refreshed.access_token, 'a new access token')
    assert.notEqual(refreshed.access_token, tokens.access_token, 'the access token is new')
    assert.ok(refreshed.refresh_token, 'a new refresh token (rotation)')
    assert.notEqual(refreshed.refresh_token, tokens.refresh_token, 'the refresh token is rotated')
    const userinfo = await client.fetchUserInfo(config, refreshed.access_token, sub)
    assert.equal(userinfo.name, C01.name, 'userinfo with the refreshed access token')

    await expectOAuthError(
      client.refreshTokenGrant(config, tokens.refresh_token),
      'invalid_grant',
      'refresh with the old (rotated) refresh token',
    )
    // RFC 9700 §4.14.2: on reuse the broker revokes the whole family, the live token included.
    await expectOAuthError(
      client.refreshTokenGrant(config, refreshed.refresh_token),
      'invalid_grant',
      'refresh with the newest refresh token after the old one was replayed',
    )
    await expectOAuthError(
      client.fetchUserInfo(config, refreshed.access_token, sub),
      'invalid_token',
      'userinfo with an access token of the revoked family',
    )
  })

  test('revoking the rotated refresh token ends it', { timeout: TIMEOUT }, async () => {
    const { tokens } = await loginAndRedeem(config)
    const sub = tokens.claims().sub
    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token)
    assert.ok(refreshed.refresh_token, 'a new refresh token')

    const beforeRevocation = await client.tokenIntrospection(config, refreshed.refresh_token)
    assert.equal(beforeRevocation.active, true, `the new refresh token is active before revocation: ${JSON.stringify(beforeRevocation)}`)

    await client.tokenRevocation(config, refreshed.refresh_token, { token_type_hint: 'refresh_token' })

    const afterRevocation = await client.tokenIntrospection(config, refreshed.refresh_token)
    assert.equal(afterRevocation.active, false, `the refresh token is inactive after revocation: ${JSON.stringify(afterRevocation)}`)
    await expectOAuthError(
      client.refreshTokenGrant(config, refreshed.refresh_token),
      'invalid_grant',
      'refresh with a revoked refresh token',
    )
    // RFC 7009 §2.1: access tokens of the same grant SHOULD be invalidated too.
    await expectOAuthError(
      client.fetchUserInfo(config, refreshed.access_token, sub),
      'invalid_token',
      'userinfo with an access token whose grant was revoked',
    )
  })

  test('a replayed authorization code is refused and revokes what it issued', { timeout: TIMEOUT }, async () => {
    const flow = await loginAndRedeem(config)
    const sub = flow.tokens.claims().sub
    await expectOAuthError(
      client.authorizationCodeGrant(config, flow.callbackUrl, flow.checks),
      'invalid_grant',
      'second redemption of the same authorization code',
    )
    // RFC 6749 §4.1.2: tokens issued from the code SHOULD be revoked.
    await expectOAuthError(
      client.refreshTokenGrant(config, flow.tokens.refresh_token),
      'invalid_grant',
      'refresh token issued from a replayed code',
    )
    await expectOAuthError(
      client.fetchUserInfo(config, flow.tokens.access_token, sub),
      'invalid_token',
      'access token issued from a replayed code',
    )
  })

  test('a wrong client secret is refused with invalid_client and leaves the code usable', { timeout: TIMEOUT }, async () => {
    const flow = await login(config)
    const wrong = await configure(`${CLIENT_SECRET}-wrong`)
    const err = await expectOAuthError(
      client.authorizationCodeGrant(wrong, flow.callbackUrl, flow.checks),
      'invalid_client',
      'code grant with a wrong client secret',
    )
    assert.equal(err.status, 401, 'invalid_client with HTTP Basic authentication answers 401 (RFC 6749 §5.2)')
    if (err instanceof client.WWWAuthenticateChallengeError) {
      assert.ok(
        err.cause.some((c) => c.scheme === 'basic'),
        `WWW-Authenticate must name the Basic scheme: ${JSON.stringify(err.cause)}`,
      )
    } else {
      assert.fail(`expected a WWW-Authenticate: Basic challenge with the 401 (RFC 6749 §5.2), got ${err.name}`)
    }
    // The failed client authentication must not have consumed the code.
    const tokens = await client.authorizationCodeGrant(config, flow.callbackUrl, flow.checks)
    assert.equal(tokens.claims().name, C01.name, 'the code still redeems with the right secret')
  })

  test('a login through a pushed authorization request (RFC 9126)', { timeout: TIMEOUT }, async () => {
    const meta = config.serverMetadata()
    assert.equal(meta.pushed_authorization_request_endpoint, `${ISSUER}/par`, 'PAR endpoint in discovery')
    const pkceCodeVerifier = client.randomPKCECodeVerifier()
    const state = client.randomState()
    const nonce = client.randomNonce()
    const authorizationUrl = await client.buildAuthorizationUrlWithPAR(config, {
      redirect_uri: REDIRECT_URI,
      scope: SCOPE,
      code_challenge: await client.calculatePKCECodeChallenge(pkceCodeVerifier),
      code_challenge_method: 'S256',
      state,
      nonce,
      login_hint: LOGIN_HINT,
    })
    assert.deepEqual(
      [...authorizationUrl.searchParams.keys()].sort(),
      ['client_id', 'request_uri'],
      'the browser carries only client_id and request_uri',
    )
    assert.match(authorizationUrl.searchParams.get('request_uri'), /^urn:ietf:params:oauth:request_uri:/)
    const { callbackUrl } = await browse(authorizationUrl)
    const tokens = await client.authorizationCodeGrant(config, callbackUrl, {
      pkceCodeVerifier,
      expectedState: state,
      expectedNonce: nonce,
      idTokenExpected: true,
    })
    assert.equal(tokens.claims().name, C01.name, 'the pushed login is C01')
    // The request_uri is single use.
    const again = await fetch(authorizationUrl, { redirect: 'manual' })
    assert.equal(again.status, 400, 'a used request_uri is refused')
    assert.equal(again.headers.get('location'), null, 'and not redirected')
  })
})
