// End-to-end test of the Suanli web console in headless Chromium (Debian's package, driven by
// playwright-core; no browser is downloaded). The scenario: finance A signs in and
// creates a settlement run; finance B approves and posts it; the enterprise sees its balance
// change; the provider gets HTTP 403 on the finance pages. Every view is saved as a full-page
// screenshot at 1280 px and 390 px, and no page may be wider than the screen.
//
// Usage: node console.mjs --url http://127.0.0.1:8080 --out DIR
// Tokens come from the environment: SUANLI_E2E_FINANCE_1, SUANLI_E2E_FINANCE_2,
// SUANLI_E2E_ENTERPRISE (beneficiary ent-a), SUANLI_E2E_PROVIDER (provider dc-a),
// SUANLI_E2E_AUDITOR. CHROMIUM overrides the browser path (default /usr/bin/chromium).

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && process.argv[i + 1]) return process.argv[i + 1];
  if (fallback !== undefined) return fallback;
  throw new Error(`missing --${name}`);
}

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`missing environment variable ${name}`);
  return v;
}

const url = arg('url').replace(/\/$/, '');
const out = arg('out', process.env.SUANLI_SCREENSHOTS || 'screenshots');
mkdirSync(out, { recursive: true });
// Logins of the persons the test signs in as; every one has the password SUANLI_E2E_PASSWORD.
const password = env('SUANLI_E2E_PASSWORD');
const logins = {
  finance1: env('SUANLI_E2E_FINANCE_1'),
  finance2: env('SUANLI_E2E_FINANCE_2'),
  enterprise: env('SUANLI_E2E_ENTERPRISE'),
  provider: env('SUANLI_E2E_PROVIDER'),
  auditor: env('SUANLI_E2E_AUDITOR'),
};
const WIDTHS = [
  { width: 1280, height: 800 },
  { width: 390, height: 844 },
];

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
  console.log(`ok - ${message}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  // Playwright starts the browser with a fresh temporary user-data directory of its own.
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});

/// A signed-in browser context (its own cookies) and its page.
async function signIn(login, expectPath) {
  const context = await browser.newContext({ viewport: WIDTHS[0], locale: 'zh-CN' });
  const page = await context.newPage();
  await page.goto(`${url}/signin`);
  await page.fill('#login', login);
  await page.fill('#password', password);
  await Promise.all([
    page.waitForURL(`**${expectPath}*`),
    page.click('#password-signin button[type=submit]'),
  ]);
  check(new URL(page.url()).pathname === expectPath, `signed in, landed on ${expectPath}`);
  return { context, page };
}

/// Saves the page at both widths (full page) and checks nothing is wider than the screen.
async function shoot(page, name) {
  for (const size of WIDTHS) {
    await page.setViewportSize(size);
    await page.waitForTimeout(50);
    const overflow = await page.evaluate(
      () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
    );
    check(overflow <= 0, `${name} at ${size.width}px fits the screen (overflow ${overflow}px)`);
    await page.screenshot({ path: join(out, `${name}-${size.width}.png`), fullPage: true });
  }
  await page.setViewportSize(WIDTHS[0]);
}

async function text(page, selector) {
  return (await page.textContent(selector))?.trim();
}

/// The key figures a page shows, as text, for the Rust side to compare with the API's: each
/// enterprise balance card's cap, paid, pending and remaining by programme, and each provider
/// payable's posted, paid and outstanding by programme.
async function enterpriseFigures(page) {
  return page.$$eval('section.card.balance', (cards) =>
    cards.map((c) => ({
      programme: c.getAttribute('data-programme'),
      figures: [...c.querySelectorAll('dl.figures dd')].map((d) => d.textContent.trim()),
    })),
  );
}

async function providerFigures(page) {
  return page.$$eval('#payables h3', (headings) =>
    headings.map((h) => ({
      programme: h.getAttribute('data-programme'),
      figures: [...h.nextElementSibling.querySelectorAll('dd')].map((d) => d.textContent.trim()),
    })),
  );
}

/// What the pages showed, written beside the screenshots as figures.json.
const shown = {};

let failed = false;
try {
  // The sign-in page, Chinese by default.
  {
    const context = await browser.newContext({ viewport: WIDTHS[0] });
    const page = await context.newPage();
    await page.goto(`${url}/finance`);
    check(new URL(page.url()).pathname === '/signin', 'not signed in: redirected to sign-in');
    check((await page.getAttribute('html', 'lang')) === 'zh-CN', 'Chinese by default');
    await shoot(page, 'signin');
    await context.close();
  }

  // The enterprise before the run: nothing received yet.
  const enterprise = await signIn(logins.enterprise, '/enterprise');
  const before = await text(enterprise.page, '#received-total');
  check(before === '¥0.00', `enterprise received ${before} before the run`);
  await shoot(enterprise.page, 'enterprise-before');

  // Finance A creates the run; the preview's lines are shown before approval.
  const financeA = await signIn(logins.finance1, '/finance');
  await shoot(financeA.page, 'finance');
  await financeA.page.selectOption('#programme', 'hz-municipal-2025');
  await financeA.page.fill('#period', '2025-03');
  await Promise.all([
    financeA.page.waitForURL('**/finance/runs/*'),
    financeA.page.click('#create-run button[type=submit]'),
  ]);
  const runPath = new URL(financeA.page.url()).pathname;
  check(/^\/finance\/runs\/\d+$/.test(runPath), `run created at ${runPath}`);
  check(
    (await financeA.page.getAttribute('h1 .status', 'data-status')) === 'open',
    'the new run is open',
  );
  check((await financeA.page.locator('#lines tbody tr').count()) >= 1, 'preview lines shown');
  await shoot(financeA.page, 'run-preview');
  check(
    (await financeA.page.locator('#approve').count()) === 0 &&
      (await financeA.page.locator('#four-eyes-note').count()) === 1,
    'the creator is not offered approval (four eyes)',
  );
  // The server refuses it all the same: a hand-made form posting the approval.
  await Promise.all([
    financeA.page.waitForURL('**/approve'),
    financeA.page.evaluate((path) => {
      const form = document.createElement('form');
      form.method = 'post';
      form.action = `${path}/approve`;
      const csrf = document.querySelector('input[name=csrf]').cloneNode();
      form.appendChild(csrf);
      document.body.appendChild(form);
      form.submit();
    }, runPath),
  ]);
  check(
    (await financeA.page.getAttribute('#error', 'data-code')) === 'four_eyes' &&
      (await financeA.page.textContent('#error')).includes('四眼原则'),
    'finance A cannot approve its own run (four eyes), told so in Chinese beside the actions',
  );
  await shoot(financeA.page, 'four-eyes-refused');

  // Finance B approves and posts.
  const financeB = await signIn(logins.finance2, '/finance');
  await financeB.page.goto(`${url}${runPath}`);
  await Promise.all([financeB.page.waitForURL(`**${runPath}`), financeB.page.click('#approve')]);
  check(
    (await financeB.page.getAttribute('h1 .status', 'data-status')) === 'approved',
    'finance B approved the run',
  );
  // Posting asks first, saying what will be booked.
  await Promise.all([financeB.page.waitForURL(`**${runPath}/post`), financeB.page.click('#post')]);
  check(
    (await financeB.page.getAttribute('#confirmation', 'data-action')) === 'post' &&
      (await text(financeB.page, '#confirm-total')) === '¥800,000.00',
    'posting shows what it will book before it books it',
  );
  await shoot(financeB.page, 'confirm-post');
  await Promise.all([financeB.page.waitForURL(`**${runPath}`), financeB.page.click('#confirm')]);
  check(
    (await financeB.page.getAttribute('h1 .status', 'data-status')) === 'posted',
    'finance B posted the run',
  );
  await shoot(financeB.page, 'run-posted');

  // A refused payment comes back with the input kept and the error, in Chinese, beside the
  // amount.
  await financeB.page.goto(`${url}/finance`);
  await financeB.page.fill('#payee', 'dc-a');
  await financeB.page.fill('#amount', '1,000');
  await financeB.page.fill('#reference', 'BANK-0001');
  await Promise.all([
    financeB.page.waitForURL('**/finance/payments'),
    financeB.page.click('#payment button[type=submit]'),
  ]);
  check(
    (await financeB.page.getAttribute('#error', 'data-code')) === 'amount_not_a_number' &&
      (await financeB.page.inputValue('#amount')) === '1,000' &&
      (await financeB.page.inputValue('#payee')) === 'dc-a' &&
      (await financeB.page.evaluate(
        () => document.querySelector('#amount').nextElementSibling?.id === 'error',
      )) &&
      (await text(financeB.page, '#error')).includes('请填写金额'),
    'a refused payment keeps the input and says why beside the amount, in Chinese',
  );
  await shoot(financeB.page, 'payment-refused');

  // Finance B records a payment to the provider.
  await financeB.page.goto(`${url}/finance`);
  await financeB.page.fill('#payee', 'dc-a');
  await financeB.page.fill('#amount', '1000.00');
  await financeB.page.fill('#reference', 'BANK-0001');
  await Promise.all([
    financeB.page.waitForURL('**/finance/payments'),
    financeB.page.click('#payment button[type=submit]'),
  ]);
  check(
    (await text(financeB.page, '#confirm-amount')) === '¥1,000.00' &&
      (await financeB.page.locator('#payment-result').count()) === 0,
    'the payment is shown for confirmation, not yet recorded',
  );
  await shoot(financeB.page, 'confirm-payment');
  await Promise.all([
    financeB.page.waitForURL('**/finance/payments'),
    financeB.page.click('#confirm'),
  ]);
  check((await financeB.page.locator('#payment-result').count()) === 1, 'payment recorded');
  await shoot(financeB.page, 'payment');
  await financeB.page.goto(`${url}/finance`);
  await shoot(financeB.page, 'finance-after');

  // The enterprise sees its balance change.
  await enterprise.page.reload();
  const after = await text(enterprise.page, '#received-total');
  check(after === '¥150,000.00', `enterprise received ${after} after the run`);
  shown.enterprise = await enterpriseFigures(enterprise.page);
  shown.enterprise_received = after;
  await shoot(enterprise.page, 'enterprise');
  await Promise.all([
    enterprise.page.waitForURL('**/enterprise?lang=en'),
    enterprise.page.click('a[lang=en]'),
  ]);
  check((await enterprise.page.getAttribute('html', 'lang')) === 'en', 'English selected');
  await shoot(enterprise.page, 'enterprise-en');

  // The provider: its own view, and 403 on the finance pages.
  const provider = await signIn(logins.provider, '/provider');
  shown.provider = await providerFigures(provider.page);
  await shoot(provider.page, 'provider');
  for (const path of ['/finance', runPath, '/audit']) {
    const response = await provider.page.goto(`${url}${path}`);
    check(response.status() === 403, `provider gets HTTP 403 on ${path}`);
  }
  await provider.page.goto(`${url}/finance`);
  await shoot(provider.page, 'provider-403');

  // The provider voids a record (uni-u's, so ent-a's figures above stay the API's): the
  // record is shown with what voiding does, and voided on confirmation.
  await provider.page.goto(`${url}/provider`);
  await provider.page.fill('#record_id', 'r4');
  await provider.page.fill('#reason', '重复计费');
  await Promise.all([
    provider.page.waitForURL('**/provider/void'),
    provider.page.click('#void-form button[type=submit]'),
  ]);
  check(
    (await provider.page.getAttribute('#confirmation', 'data-action')) === 'void' &&
      (await text(provider.page, '#confirm-amount')) === '¥500,000.00',
    'voiding shows the record before voiding it',
  );
  await shoot(provider.page, 'confirm-void');
  await Promise.all([
    provider.page.waitForURL('**/provider/void'),
    provider.page.click('#confirm'),
  ]);
  check(
    (await provider.page.getAttribute('#void-result', 'data-voided')) === 'true',
    'the provider voided its record',
  );

  // The auditor: journal, trial balance, and re-derive of the posted run.
  const auditor = await signIn(logins.auditor, '/audit');
  check(
    (await auditor.page.getAttribute('#balanced', 'data-balanced')) === 'true',
    'the trial balance balances',
  );
  await shoot(auditor.page, 'audit');
  await Promise.all([
    auditor.page.waitForURL('**/rederive'),
    auditor.page.click('#posted-runs button[type=submit]'),
  ]);
  check(
    (await auditor.page.getAttribute('#rederive-result', 'data-matches')) === 'true',
    're-derive matches byte for byte',
  );
  await shoot(auditor.page, 'rederive');

  // The main views in English too.
  for (const [who, path, name] of [
    [financeB, '/finance', 'finance-en'],
    [financeB, runPath, 'run-posted-en'],
    [auditor, '/audit', 'audit-en'],
    [provider, '/provider', 'provider-en'],
  ]) {
    await who.page.goto(`${url}${path}?lang=en`);
    check((await who.page.getAttribute('html', 'lang')) === 'en', `${name} is in English`);
    await shoot(who.page, name);
  }
} catch (e) {
  failed = true;
  console.error(`FAILED: ${e.stack || e}`);
} finally {
  await browser.close();
}
writeFileSync(join(out, 'figures.json'), JSON.stringify(shown, null, 2));
console.log(`screenshots in ${out}`);
process.exit(failed ? 1 : 0);
