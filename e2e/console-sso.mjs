// Single sign-on of the Suanli web console in headless Chromium (Debian's package, driven by
// playwright-core), against the OpenID Provider of oidc-provider.mjs: open the console, choose
// "Sign in with SSO", sign in and consent on the provider's pages, and come back signed in as
// the Suanli user the claim names; then an account that names no user, and one that names a
// disabled user, are refused with a page saying so. Screenshots go to --out.
//
// Usage: node console-sso.mjs --url http://127.0.0.1:8080 --out DIR
// From the environment: SUANLI_E2E_SSO_ACCOUNT (the provider account that maps to a user),
// SUANLI_E2E_SSO_PERSON (the name the console's header must show), SUANLI_E2E_SSO_HOME (the
// path that user's role lands on), SUANLI_E2E_SSO_UNKNOWN and SUANLI_E2E_SSO_DISABLED (accounts
// to be refused). CHROMIUM overrides the browser path (default /usr/bin/chromium).

import { mkdirSync } from 'node:fs';
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

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
  console.log(`ok - ${message}`);
}

const url = arg('url').replace(/\/$/, '');
const out = arg('out');
mkdirSync(out, { recursive: true });
const consoleOrigin = new URL(url).origin;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
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

/// Goes from the console's sign-in page through the provider's login and consent pages as
/// `account`; returns the page once it is back on the console.
async function ssoAs(account, lang) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: lang });
  // Only this machine is reached: the provider's development pages import a web font.
  await context.route('**/*', (route) => {
    const host = new URL(route.request().url()).hostname;
    return ['127.0.0.1', 'localhost', '[::1]'].includes(host) ? route.continue() : route.abort();
  });
  const page = await context.newPage();
  await page.goto(`${url}/?lang=${lang === 'en' ? 'en' : 'zh'}`);
  check(new URL(page.url()).pathname === '/signin', `${account}: an unsigned browser lands on the sign-in page`);
  const button = page.locator('#sso-signin');
  const label = (await button.textContent()).trim();
  check(
    label === (lang === 'en' ? 'Sign in with SSO' : '使用单点登录（SSO）登录'),
    `${account}: the sign-in page offers "${label}"`,
  );
  await Promise.all([page.waitForURL((u) => u.origin !== consoleOrigin), button.click()]);
  check(new URL(page.url()).origin !== consoleOrigin, `${account}: sent to the identity provider`);
  await page.screenshot({ path: join(out, `sso-${account}-1-provider-login.png`) });
  // The provider's login page, then its consent page; both post back to the provider.
  await page.fill('input[name=login]', account);
  await page.fill('input[name=password]', 'any password: the development provider accepts all');
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  if (new URL(page.url()).origin !== consoleOrigin) {
    await page.screenshot({ path: join(out, `sso-${account}-2-provider-consent.png`) });
    await Promise.all([
      page.waitForURL((u) => u.origin === consoleOrigin),
      page.click('button[type=submit]'),
    ]);
  }
  // The callback's page refreshes itself onto the console's start page.
  await page.waitForLoadState('load');
  await page.waitForTimeout(300);
  return { context, page };
}

// The account that maps to a user: signed in as that person, with their role's start page.
{
  const { context, page } = await ssoAs(env('SUANLI_E2E_SSO_ACCOUNT'), 'zh-CN');
  await page.waitForURL(`**${env('SUANLI_E2E_SSO_HOME')}*`);
  check(
    new URL(page.url()).pathname === env('SUANLI_E2E_SSO_HOME'),
    `signed in with SSO, landed on ${env('SUANLI_E2E_SSO_HOME')}`,
  );
  const who = (await page.textContent('header .who')).trim();
  check(who.includes(env('SUANLI_E2E_SSO_PERSON')), `the header names the person: ${who}`);
  await page.screenshot({ path: join(out, 'sso-signed-in.png'), fullPage: true });
  // The account page: a single sign-on session, listed with how it signed in, no code asked.
  await page.goto(`${url}/account?lang=en`);
  const status = await page.getAttribute('#totp-status', 'data-sso');
  check(status === 'true', 'the account page says the identity provider owns the second factor');
  const via = await page.getAttribute('#sessions tbody tr td[data-via]', 'data-via');
  check(via === 'via.sso', `the session is listed as signed in with SSO (${via})`);
  await page.screenshot({ path: join(out, 'sso-account.png'), fullPage: true });
  // Sign-out works as for any session.
  await Promise.all([page.waitForURL('**/signin*'), page.click('header form button[type=submit]')]);
  check(new URL(page.url()).pathname === '/signin', 'signed out');
  await context.close();
}

// Accounts that name no enabled user: refused with a page, nobody signed in.
for (const [name, expected] of [
  [env('SUANLI_E2E_SSO_UNKNOWN'), 'no enabled user here matches'],
  [env('SUANLI_E2E_SSO_DISABLED'), 'this user is disabled'],
]) {
  const { context, page } = await ssoAs(name, 'en');
  check(new URL(page.url()).pathname === '/signin/sso/callback', `${name}: stays on the callback`);
  const error = (await page.textContent('#error')).trim();
  check(error.includes(expected), `${name} is refused: ${error}`);
  check((await page.getAttribute('#error', 'data-field')) === 'sso', `${name}: the refusal names sso`);
  await page.screenshot({ path: join(out, `sso-refused-${name}.png`), fullPage: true });
  await page.goto(`${url}/finance`);
  check(new URL(page.url()).pathname === '/signin', `${name}: not signed in afterwards`);
  await context.close();
}

await browser.close();
