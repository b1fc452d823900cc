// Browser test of the broker's pages: Debian's Chromium (/usr/bin/chromium), driven by
// playwright-core, clicks through the demo app, the broker's login, logout and error pages and the
// mock VNeID the way a citizen would, and through the roles' pages the way a civil servant and an
// approver would.
//
// Run through tests/browser/run.sh, which starts `broker dev` (broker + mock VNeID + demo app,
// the demo app registered as client `demo-rp`) and exports BROKER_URL, MOCK_URL, DEMO_URL and
// OPERATOR_TOKEN.
// Each test gets its own browser with a fresh profile (--user-data-dir), so no cookie leaks from
// one test into another. On a failure the page is saved as a PNG in SCREENSHOT_DIR.

import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'

import { chromium } from 'playwright-core'

const env = (name) => {
  const value = process.env[name]
  if (!value) {
    throw new Error(`${name} is not set: run this test through tests/browser/run.sh`)
  }
  return value
}

const BROKER_URL = env('BROKER_URL')
const MOCK_URL = env('MOCK_URL')
const DEMO_URL = env('DEMO_URL')
// The operator token `broker dev` printed (run.sh reads it from the log), for the admin API.
const OPERATOR_TOKEN = env('OPERATOR_TOKEN')
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium'
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || join(tmpdir(), 'broker-browser-failures')
const DEMO_CLIENT_ID = 'demo-rp'

// Test citizen C01 of devkit/data/citizens-vneid.json.
const CITIZEN = 'C01'
const C01_NAME = 'Võ Hữu Tài'
const TIMEOUT = 20_000

// The machine's network is closed: without these Chromium waits on connections it cannot make.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

/**
 * Runs `body(page, context)` in a new Chromium with a fresh profile directory (Playwright passes
 * it as --user-data-dir). `locale` sets the browser's language and so its Accept-Language. On
 * failure the current page is saved to SCREENSHOT_DIR/<name>.png before the error is rethrown.
 */
async function inBrowser(name, { locale = 'vi-VN' } = {}, body) {
  const profile = mkdtempSync(join(tmpdir(), 'broker-browser-profile-'))
  let context
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      locale,
      timeout: 60_000,
    })
    context.setDefaultTimeout(TIMEOUT)
    context.setDefaultNavigationTimeout(TIMEOUT)
    const page = context.pages()[0] ?? (await context.newPage())
    try {
      await body(page, context)
    } catch (error) {
      try {
        mkdirSync(SCREENSHOT_DIR, { recursive: true })
        const file = join(SCREENSHOT_DIR, `${name.replace(/[^A-Za-z0-9_-]+/g, '-')}.png`)
        await page.screenshot({ path: file, fullPage: true, timeout: 5_000 })
        console.error(`# screenshot of the failing page (${page.url()}): ${file}`)
      } catch (shotError) {
        console.error(`# no screenshot: ${shotError.message}`)
      }
      throw error
    }
  } finally {
    await context?.close().catch(() => {})
    rmSync(profile, { recursive: true, force: true })
  }
}

const lang = (page) => page.locator('html').getAttribute('lang')

// axe-core, run inside the page through Playwright's evaluate (the pages' CSP allows no script).
const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8')

/** Checks the current page against WCAG 2.1 A and AA with axe-core; fails on any violation. */
async function expectAccessible(page, what) {
  const result = await page.evaluate(
    `${AXE_SOURCE}; axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } })`,
  )
  const violations = result.violations.map(
    (v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`,
  )
  assert.deepEqual(violations, [], `${what}: WCAG 2.1 AA violations`)
  assert.ok(result.passes.length > 10, `${what}: axe-core ran its checks`)
}

/** The last code the dev SMS gateway got for `phone`, read from broker dev's /dev/sms page. */
async function codeFromDevSms(context, phoneDigits) {
  const sms = await context.newPage()
  try {
    await sms.goto(`${BROKER_URL}/dev/sms`)
    const text = await sms.locator('body').innerText()
    const line = text.split('\n').find((l) => l.replace(/\D/g, '').includes(phoneDigits.slice(-3)) && /\b\d{6}\b/.test(l))
    const code = (line ?? text).match(/\b(\d{6})\b/)
    assert.ok(code, `a code for ${phoneDigits} on /dev/sms: ${text}`)
    return code[1]
  } finally {
    await sms.close()
  }
}

/** From the demo app through the login page and the mock VNeID as `citizen`; stops where the broker sends the browser. */
async function throughVneid(page, citizen) {
  await page.goto(`${DEMO_URL}/`)
  await page.getByRole('link', { name: 'Đăng nhập bằng VNeID' }).click()
  const button = await expectLoginPage(page, { language: 'vi' })
  await button.click()
  await page.waitForURL(startsWith(`${MOCK_URL}/`))
  await page.locator(`button[name="citizen"][value="${citizen}"]`).click()
  // Back from VNeID: to the app, or to the first step page, which the callback answers itself.
  await page.waitForURL((url) => !url.href.startsWith(MOCK_URL))
  await page.waitForLoadState()
}
const startsWith = (prefix) => (url) => url.href.startsWith(prefix)

/** On the broker's login page (after the demo app's redirect): checks it and returns its button. */
async function expectLoginPage(page, { language }) {
  await page.waitForURL(startsWith(`${BROKER_URL}/authorize?`))
  assert.equal(await lang(page), language, 'language of the login page')
  const button = page.locator('#vneid-login')
  const [title, text] =
    language === 'vi' ? ['Đăng nhập', 'Đăng nhập bằng VNeID'] : ['Sign in', 'Sign in with VNeID']
  assert.equal(await page.title(), title)
  assert.equal((await button.textContent()).trim(), text)
  assert.ok(await button.isVisible(), 'the VNeID button is visible')
  const href = new URL(await button.getAttribute('href'))
  assert.equal(href.origin, MOCK_URL, 'the VNeID button leads to (mock) VNeID')
  return button
}

/** An operator's call to the broker's admin API (JSON in, JSON out): { status, body }. */
async function adminApi(method, path, body) {
  const response = await fetch(`${BROKER_URL}${path}`, {
    method,
    headers: { authorization: `Bearer ${OPERATOR_TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await response.text()
  let parsed = text
  try {
    parsed = JSON.parse(text)
  } catch {}
  return { status: response.status, body: parsed }
}

/** From the broker's login page: the VNeID button, the mock's chooser, citizen C01, the demo app. */
async function completeLogin(page, button) {
  await button.click()
  await page.waitForURL(startsWith(`${MOCK_URL}/`))
  assert.match(await page.title(), /VNeID/)
  const choice = page.locator(`button[name="citizen"][value="${CITIZEN}"]`)
  assert.equal(await choice.count(), 1, `the mock offers citizen ${CITIZEN}`)
  await choice.click()
  await page.waitForURL(startsWith(`${DEMO_URL}/callback?`))
  const heading = (await page.locator('h1').textContent()).trim()
  if (heading !== 'Đăng nhập thành công') {
    const detail = await page.locator('body').innerText()
    assert.fail(`the demo app did not sign in (h1 "${heading}"): ${detail}`)
  }
  // The first <pre> holds the ID token's claims as the demo app verified them.
  const claims = JSON.parse(await page.locator('pre').first().textContent())
  assert.equal(claims.iss, BROKER_URL)
  assert.equal(claims.aud, DEMO_CLIENT_ID)
  assert.equal(claims.name, C01_NAME)
  assert.ok(claims.sub, 'a subject')
  assert.match(await page.locator('body').innerText(), new RegExp(C01_NAME))
  return claims
}

/** The whole login from the demo app's home page, in Vietnamese. */
async function loginThroughDemo(page) {
  await page.goto(`${DEMO_URL}/`)
  await page.getByRole('link', { name: 'Đăng nhập bằng VNeID' }).click()
  const button = await expectLoginPage(page, { language: 'vi' })
  return completeLogin(page, button)
}

/** A prompt=none authorization request for the demo app; returns the redirect's query. */
async function silentAuthorize(page) {
  const url = new URL(`${BROKER_URL}/authorize`)
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: DEMO_CLIENT_ID,
    redirect_uri: `${DEMO_URL}/callback`,
    scope: 'openid profile',
    state: 'browser-test-state',
    nonce: 'browser-test-nonce',
    // S256 of the RFC 7636 example verifier; the code is never redeemed.
    code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
    code_challenge_method: 'S256',
    prompt: 'none',
  })
  // The demo app's callback then fails on the unknown state (it never redeems this code): only
  // the broker's answer, the URL it redirected to, matters here.
  await page.goto(url.href)
  await page.waitForURL(startsWith(`${DEMO_URL}/callback?`))
  const answered = new URL(page.url())
  assert.equal(answered.searchParams.get('state'), 'browser-test-state')
  assert.equal(answered.searchParams.get('iss'), BROKER_URL, 'RFC 9207 iss')
  return answered.searchParams
}

describe('broker pages in Chromium', () => {
  test('demo app → broker login page (vi) → mock VNeID → C01 → verified claims', async () => {
    await inBrowser('login-vi', {}, async (page, context) => {
      await page.goto(`${DEMO_URL}/`)
      assert.match(await page.title(), /Ứng dụng mẫu/)
      await page.getByRole('link', { name: 'Đăng nhập bằng VNeID' }).click()
      const button = await expectLoginPage(page, { language: 'vi' })
      assert.equal(await page.locator('h1').textContent(), 'Đăng nhập')
      // The browser stored the pending login's binding cookie.
      const binding = (await context.cookies(BROKER_URL)).filter((c) =>
        /^(__Host-)?broker_login_/.test(c.name),
      )
      assert.equal(binding.length, 1, 'one pending-login binding cookie')
      assert.match(binding[0].name, /^(__Host-)?broker_login_[A-Za-z0-9_-]{16}$/)
      assert.ok(binding[0].httpOnly, 'the binding cookie is HttpOnly')
      await completeLogin(page, button)
    })
  })

  test('the language switch leads to the English login page, which still logs in', async () => {
    await inBrowser('login-en', {}, async (page) => {
      await page.goto(`${DEMO_URL}/login`)
      await expectLoginPage(page, { language: 'vi' })
      await page.getByRole('link', { name: 'English', exact: true }).click()
      await page.waitForURL((url) => url.searchParams.get('ui_locales') === 'en')
      const button = await expectLoginPage(page, { language: 'en' })
      assert.equal(await page.locator('h1').textContent(), 'Sign in')
      assert.equal(
        await page.getByRole('link', { name: 'Tiếng Việt', exact: true }).count(),
        1,
        'a link back to Vietnamese',
      )
      await completeLogin(page, button)
    })
  })

  test('logout: confirmation with CSRF field, signed-out page, no silent login afterwards', async () => {
    await inBrowser('logout', {}, async (page) => {
      await loginThroughDemo(page)

      // Control: while the SSO session lives, prompt=none answers with a code.
      const before = await silentAuthorize(page)
      assert.equal(before.get('error'), null, `prompt=none before logout: ${before}`)
      assert.ok(before.get('code'), 'prompt=none before logout issues a code')

      await page.goto(`${BROKER_URL}/end_session`)
      assert.equal(await lang(page), 'vi')
      assert.equal(await page.title(), 'Đăng xuất')
      const csrf = page.locator('form input[type="hidden"][name="csrf"]')
      assert.equal(await csrf.count(), 1, 'a hidden csrf field')
      assert.ok((await csrf.getAttribute('value')).length >= 16, 'a non-trivial csrf token')
      const confirm = page.locator('#confirm-logout')
      assert.ok(await confirm.isVisible(), 'the confirmation button is visible')
      let posted
      page.on('request', (request) => {
        if (request.method() === 'POST' && request.url() === `${BROKER_URL}/end_session`) {
          posted = request
        }
      })
      await Promise.all([page.waitForNavigation(), confirm.click()])
      const title = await page.title()
      const sent = (await posted?.allHeaders()) ?? {}
      assert.notEqual(title, 'Không thể đăng nhập', 'the logout was refused')
      assert.notEqual(
        title,
        'Đăng xuất',
        `the broker asked again instead of signing out: it refused this page's own POST ` +
          `(Origin: ${sent.origin ?? 'none'}, Sec-Fetch-Site: ${sent['sec-fetch-site'] ?? 'none'})`,
      )
      assert.equal(title, 'Đã đăng xuất')
      assert.equal(await page.locator('h1').textContent(), 'Đã đăng xuất')

      // The SSO session is gone: prompt=none now needs a login ...
      const after = await silentAuthorize(page)
      assert.equal(after.get('error'), 'login_required', `prompt=none after logout: ${after}`)
      assert.equal(after.get('code'), null)
      // ... and the demo app's login shows the broker's login page again.
      await page.goto(`${DEMO_URL}/login`)
      await expectLoginPage(page, { language: 'vi' })
    })
  })

  test('a bad authorization request shows the error page, in Vietnamese or English', async () => {
    await inBrowser('error-vi', {}, async (page) => {
      const response = await page.goto(`${BROKER_URL}/authorize?client_id=nobody`)
      assert.equal(response.status(), 400)
      assert.equal(await lang(page), 'vi')
      assert.equal(await page.title(), 'Không thể đăng nhập')
      assert.equal(await page.locator('h1').textContent(), 'Không thể đăng nhập')
      assert.match(await page.locator('body').innerText(), /Cần hỗ trợ/)

      const english = await page.goto(`${BROKER_URL}/authorize?client_id=nobody&ui_locales=en`)
      assert.equal(english.status(), 400)
      assert.equal(await lang(page), 'en')
      assert.equal(await page.title(), 'Sign-in failed')
      assert.match(await page.locator('body').innerText(), /Need help\?/)
    })
    // An English-speaking browser gets English without ui_locales (Accept-Language).
    await inBrowser('error-en-browser', { locale: 'en-US' }, async (page) => {
      await page.goto(`${BROKER_URL}/authorize?client_id=nobody`)
      assert.equal(await lang(page), 'en')
      assert.equal(await page.title(), 'Sign-in failed')
    })
  })

  test('a new citizen gives a phone, types the SMS code and is signed in to the demo app', async () => {
    await inBrowser('new-citizen', {}, async (page, context) => {
      await throughVneid(page, 'C04')
      // The callback answers with the phone step itself; loaded again, its address leads to the
      // step's own.
      assert.match(page.url(), new RegExp(`^${BROKER_URL}/callback/vneid\\?`), 'the phone step')
      assert.equal((await page.locator('h1').textContent()).trim(), 'Cập nhật số điện thoại')
      await page.reload()
      assert.match(page.url(), new RegExp(`^${BROKER_URL}/login/`), 'the phone step, reloaded')
      assert.equal(await lang(page), 'vi')
      assert.equal((await page.locator('h1').textContent()).trim(), 'Cập nhật số điện thoại')
      await expectAccessible(page, 'phone page')
      await page.getByLabel('Số điện thoại').fill('0781 139 068')
      await page.locator('#send-code').click()
      await page.waitForSelector('#verify-code')
      assert.match(await page.locator('main').innerText(), /0781\*+068/, 'the masked number')
      await expectAccessible(page, 'code page')
      const code = await codeFromDevSms(context, '0781139068')
      await page.getByLabel('Mã OTP').fill(code)
      await page.locator('#verify-code').click()
      await page.waitForURL(startsWith(`${DEMO_URL}/callback?`))
      assert.equal((await page.locator('h1').textContent()).trim(), 'Đăng nhập thành công')
      const claims = JSON.parse(await page.locator('pre').first().textContent())
      assert.equal(claims.name, 'Huỳnh Tấn Lộc')
      // The account page shows the proven phone, behind the same SSO session.
      await page.goto(`${BROKER_URL}/account`)
      await page.waitForSelector('#phone-now')
      assert.match(await page.locator('#phone-now').innerText(), /0781139068 \(đã xác thực\)/)
      assert.match(await page.locator('#sessions').innerText(), /thiết bị này/)
      await expectAccessible(page, 'account page')
      // A second browser signs in too; the first one signs it out from the account page.
      await inBrowser('second-browser', {}, async (other) => {
        await throughVneid(other, 'C04')
        await other.waitForURL(startsWith(`${DEMO_URL}/callback?`))
      })
      await page.reload()
      assert.equal(await page.locator('#sessions li').count(), 2, 'both sessions are listed')
      await page.locator('#sessions form button').click()
      await page.waitForSelector('.msg.info')
      assert.match(await page.locator('.msg.info').innerText(), /Đã đăng xuất phiên đăng nhập đó/)
      assert.equal(await page.locator('#sessions li').count(), 1, 'the other session is gone')
      await expectAccessible(page, 'account page after signing a session out')
    })
  })

  test('a legacy citizen whose birth date differs meets the failure page, in both languages', async () => {
    await inBrowser('failure-page', {}, async (page) => {
      await throughVneid(page, 'C03')
      assert.match(page.url(), new RegExp(`^${BROKER_URL}/callback/vneid\\?`))
      assert.equal((await page.locator('h1').textContent()).trim(), 'Chuẩn hoá không thành công')
      const fields = await page.locator('#failure-fields li').allInnerTexts()
      assert.deepEqual(fields, ['Ngày sinh'])
      assert.equal(await page.locator('a[href="tel:19000368"]').count(), 1, 'VNeID hotline')
      assert.equal(await page.locator('a[href="tel:19001075"]').count(), 1, 'Hue-S hotline')
      assert.doesNotMatch(await page.locator('main').innerText(), /1979/, "never the other record's data")
      await expectAccessible(page, 'failure page')
      await page.getByRole('link', { name: 'English', exact: true }).click()
      await page.waitForFunction(() => document.documentElement.lang === 'en')
      assert.deepEqual(await page.locator('#failure-fields li').allInnerTexts(), ['Date of birth'])
      await expectAccessible(page, 'failure page (en)')
      await page.locator('#continue').click()
      await page.waitForSelector('#send-code')
    })
  })

  test('a civil servant registers a role and an approver of the agency approves it', async () => {
    await inBrowser('roles-approver', {}, async (approver) => {
      // C07 (level 2, on the roster at Sở TT&TT) signs in to the demo app; their sub is their
      // account id, which the operator names in the grant.
      await throughVneid(approver, 'C07')
      await approver.waitForURL(startsWith(`${DEMO_URL}/callback?`))
      assert.equal((await approver.locator('h1').textContent()).trim(), 'Đăng nhập thành công')
      const c07 = JSON.parse(await approver.locator('pre').first().textContent())
      assert.ok(c07.sub, "C07's subject")
      // An approver of Sở Y tế decides for its Phòng Nghiệp vụ Y too (the subtree).
      const granted = await adminApi('POST', '/admin/approvers', {
        account_id: c07.sub,
        org_code: '000.00.07.H57',
      })
      assert.equal(granted.status, 201, `grant: ${JSON.stringify(granted.body)}`)

      // C06 (level 1, Chuyên viên of Phòng Nghiệp vụ Y on the roster) in a browser of their own.
      await inBrowser('roles-requester', {}, async (page) => {
        await page.goto(`${BROKER_URL}/account`)
        await page.waitForURL(startsWith(`${BROKER_URL}/authorize?`))
        await page.locator('#vneid-login').click()
        await page.waitForURL(startsWith(`${MOCK_URL}/`))
        await page.locator('button[name="citizen"][value="C06"]').click()
        await page.waitForURL(
          (url) => url.href.startsWith(`${BROKER_URL}/account`) && url.pathname !== '/account/callback',
        )
        // The account page's section "Vai trò" links to the roles page.
        assert.ok(await page.getByRole('heading', { name: 'Vai trò', exact: true }).isVisible())
        await page.getByRole('link', { name: 'Đăng ký, sửa và xem vai trò công tác' }).click()
        await page.waitForURL(startsWith(`${BROKER_URL}/account/roles`))
        assert.equal(await lang(page), 'vi')
        assert.equal((await page.locator('h1').textContent()).trim(), 'Vai trò')
        assert.match(await page.locator('main').innerText(), /Bạn chưa đăng ký vai trò nào/)
        await expectAccessible(page, 'roles page')

        await page.getByLabel('Đối tượng').selectOption({ label: 'Công chức' })
        await page.locator('#choose-category').click()
        await page.waitForSelector('#role-form')
        assert.match(await page.locator('#prefilled').innerText(), /danh sách cán bộ/)
        assert.equal(await page.getByLabel('Đơn vị công tác').inputValue(), '000.02.07.H57')
        assert.equal(await page.getByLabel('Chức vụ').inputValue(), 'Chuyên viên')
        await expectAccessible(page, 'roles page with the form')
        await page.getByRole('checkbox', { name: /Biên tập viên/ }).check()
        await page.getByRole('button', { name: 'Đăng ký', exact: true }).click()
        await page.waitForSelector('.msg.info')
        assert.match(await page.locator('.msg.info').innerText(), /chờ phê duyệt/)
        const mine = page.locator('#roles li')
        assert.equal(await mine.count(), 1, 'one role')
        assert.match(await mine.innerText(), /Chuyên viên/)
        assert.match(await mine.innerText(), /Phòng Nghiệp vụ Y/)
        assert.match(await mine.innerText(), /Biên tập viên/)
        assert.match(await mine.innerText(), /Trạng thái: Chờ phê duyệt/)
        await expectAccessible(page, 'roles page after the request')
        // The same post again is refused, with the form kept as it was.
        await page.getByLabel('Đối tượng').selectOption({ label: 'Công chức' })
        await page.locator('#choose-category').click()
        await page.waitForSelector('#role-form')
        const [again] = await Promise.all([
          page.waitForResponse((r) => r.request().method() === 'POST'),
          page.getByRole('button', { name: 'Đăng ký', exact: true }).click(),
        ])
        assert.equal(again.status(), 400)
        await page.waitForSelector('.msg.error')
        assert.equal(await page.getByLabel('Chức vụ').inputValue(), 'Chuyên viên')
        assert.equal(await page.locator('#roles li').count(), 1, 'still one role')
        await expectAccessible(page, 'roles page with a refusal')
        await page.goto(`${BROKER_URL}/account/roles?lang=en&category=cong_chuc`)
        assert.equal(await lang(page), 'en')
        assert.match(await page.locator('#roles li').innerText(), /State: Awaiting approval/)
        await expectAccessible(page, 'roles page (en)')

        // C07 finds it in the queue of their agencies and approves it with a reason.
        // The account pages' own login goes through silently on the SSO session of the demo
        // app's login, and back to the page asked for.
        await approver.goto(`${BROKER_URL}/account/approvals`)
        await approver.waitForURL(startsWith(`${BROKER_URL}/account/approvals`))
        assert.equal((await approver.locator('h1').textContent()).trim(), 'Phê duyệt vai trò')
        const queued = approver.locator('#pending li')
        assert.equal(await queued.count(), 1, 'one request awaits C07')
        assert.match(await queued.innerText(), /Phan Quang Huy/)
        await expectAccessible(approver, 'approvals page')
        await queued.getByRole('link', { name: 'Phan Quang Huy' }).click()
        await approver.waitForSelector('#decision')
        assert.equal((await approver.locator('h1').textContent()).trim(), 'Yêu cầu vai trò')
        const request = await approver.locator('#request').innerText()
        assert.match(request, /Sở Y tế › Phòng Nghiệp vụ Y/)
        assert.match(request, /Khớp danh sách cán bộ/)
        assert.equal(await approver.locator('#level-note').count(), 0, 'C07 logged in at level 2')
        await expectAccessible(approver, 'approval page')
        await approver.getByRole('link', { name: 'English', exact: true }).click()
        await approver.waitForFunction(() => document.documentElement.lang === 'en')
        assert.equal(await approver.locator('#approve').textContent(), 'Approve')
        await expectAccessible(approver, 'approval page (en)')
        await approver.getByRole('link', { name: 'Tiếng Việt', exact: true }).click()
        await approver.waitForFunction(() => document.documentElement.lang === 'vi')
        await approver.getByLabel('Lý do').fill('Đúng người, đúng chức vụ')
        await approver.getByRole('button', { name: 'Phê duyệt', exact: true }).click()
        await approver.waitForSelector('.msg.info')
        assert.match(await approver.locator('.msg.info').innerText(), /Đã phê duyệt/)
        assert.match(await approver.locator('#history').innerText(), /Đúng người, đúng chức vụ/)
        assert.equal(await approver.locator('#approve').count(), 0, 'decided: no approve button')
        await expectAccessible(approver, 'approval page after the decision')

        // C06 sees the decision and its reason.
        await page.goto(`${BROKER_URL}/account/roles`)
        const decided = await page.locator('#roles li').innerText()
        assert.match(decided, /Trạng thái: Đã phê duyệt/)
        assert.match(decided, /Đúng người, đúng chức vụ/)
        await expectAccessible(page, 'roles page with an approved role')
      })
    })
  })
})
