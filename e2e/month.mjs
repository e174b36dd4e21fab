// Each role's month in the Suanli web console, in headless Chromium (Debian's package, driven
// by playwright-core; no browser is downloaded). The walk runs once per language of the plan
// (zh-CN, then English), at 390 px wide; finance's pages are also checked at 1280 px:
//
//   finance     creates the month's run with the month picker and sees the preview; a second
//               finance person approves and posts it (with the confirmation); a payment above
//               the four-eyes amount is recorded and the other finance person confirms it;
//               finance downloads the payee's statement and finds the run's lines in it.
//   enterprise  checks its balance figures (entitled, settled, paid out, pending, remaining)
//               against the plan's, computed by the Rust test from docs/rules.md.
//   provider    checks what it is owed and its rejected records (said in the page's language),
//               and voids one of its records through the confirmation.
//   auditor     filters the journal and finds the walk's posting and payment under the names
//               of the persons who did them.
//
// At every step: nothing wider than the screen (document.scrollingElement.scrollWidth <=
// innerWidth), the page in the walk's language (a few known labels, and on a zh-CN page no
// English word in the main content outside code), and a screenshot. A failure names the step,
// the role and the language.
//
// Usage: node month.mjs --plan PLAN.json (written by crates/cli/tests/console_month.rs: the
// console's URL, the screenshot directory, the persons and the expected figures of each walk).
// CHROMIUM overrides the browser path (default /usr/bin/chromium).

import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

function arg(name) {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && process.argv[i + 1]) return process.argv[i + 1];
  throw new Error(`missing --${name}`);
}

const plan = JSON.parse(readFileSync(arg('plan'), 'utf8'));
const url = plan.url.replace(/\/$/, '');
const out = plan.out;
mkdirSync(out, { recursive: true });
writeFileSync(join(out, 'steps.txt'), '');

const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1280, height: 800 };
/// Finance works at a desk too: its pages are checked at both widths.
const WIDTHS = { finance: [PHONE, DESKTOP] };

/// Where the walk is: every check and failure names it.
const at = { lang: '', role: '', step: '' };
let shot = 0;

function where() {
  return `step ${at.step}, role ${at.role}, language ${at.lang}`;
}

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
  console.log(`ok - [${at.lang} ${at.role} ${at.step}] ${message}`);
}

/// A value as JSON with its objects' keys sorted (the plan's objects come with sorted keys).
function canon(v) {
  return JSON.stringify(v, (_, x) =>
    x && typeof x === 'object' && !Array.isArray(x)
      ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : 1)))
      : x,
  );
}

function equal(shown, expected, what) {
  const [s, e] = [canon(shown), canon(expected)];
  check(s === e, `${what}: shown ${s}, expected ${e}`);
}

async function text(page, selector) {
  const t = await page.textContent(selector);
  return t === null ? null : t.trim();
}

/// Clicks and waits for the navigation it starts to reach `pattern` (a glob, a RegExp or a
/// predicate of the URL). A new navigation: the page may already be at that URL.
async function go(page, selector, pattern) {
  await Promise.all([page.waitForNavigation({ url: pattern }), page.click(selector)]);
}

/// A predicate of a URL: its path and these query fields.
function to(path, query = {}) {
  return (u) =>
    u.pathname === path && Object.entries(query).every(([k, v]) => u.searchParams.get(k) === v);
}

/// The main content's text outside code, one string per text node.
async function mainTexts(page) {
  return page.evaluate(() => {
    const main = document.querySelector('main');
    if (!main) return [];
    const texts = [];
    const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      if (n.parentElement.closest('code, script, style, option')) continue;
      const t = n.nodeValue.trim();
      if (t) texts.push(t);
    }
    return texts;
  });
}

/// CLI commands a page names in its text (not words to translate): the statement's intro
/// says its columns are those of `suanli settle export`.
const COMMANDS = ['settle export'];

/// English words in zh-CN text: tokens of letters only, at least two, lower case or
/// capitalised (Settled, paid); acronyms and names of protocols (CSV, SKU, gRPC) are not
/// words here, nor are ids (ent-a, hz-municipal-2025), logins (wang.fang) and codes.
function englishWords(texts) {
  const words = [];
  for (let t of texts) {
    for (const command of COMMANDS) t = t.replaceAll(command, '');
    for (const raw of t.split(/[\s\u3000-\u303f\u3400-\u9fff\uff00-\uffef·—…]+/)) {
      const token = raw.replace(/^[("'[{,.;:!?]+|[)"'\]},.;:!?]+$/g, '');
      if (/^[A-Za-z]?[a-z]+$/.test(token) && token.length >= 2) words.push(token);
    }
  }
  return words;
}

/// Chinese in English text, once the data is taken out: the persons' names, the registry's
/// programme names and the reasons people gave for voids, which are the same in both
/// languages.
function chineseTexts(texts) {
  const data = [
    ...Object.values(plan.people).map((p) => p.name),
    ...plan.data_names,
    ...plan.walks.map((w) => w.void.reason),
  ];
  return texts
    .map((t) => data.reduce((rest, d) => rest.replaceAll(d, ''), t))
    .filter((t) => /[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]/.test(t));
}

/// The checks every page of the walk gets, then its screenshot (at each width of the role).
/// `labels` are [zh-CN, English] pairs of strings the page shows in its language.
async function page_checks(page, name, labels = []) {
  const lang = at.lang === 'zh' ? 'zh-CN' : 'en';
  equal(await page.getAttribute('html', 'lang'), lang, `${name}: the page's language`);
  const texts = await mainTexts(page);
  const all = texts.join('\n');
  for (const [zh, en] of labels) {
    const [want, other] = at.lang === 'zh' ? [zh, en] : [en, zh];
    check(
      all.includes(want) && !all.includes(other),
      `${name}: shows ${JSON.stringify(want)}, not ${JSON.stringify(other)}`,
    );
  }
  if (at.lang === 'zh') {
    const words = englishWords(texts);
    check(words.length === 0, `${name}: no English words in the main content (${words.join(', ')})`);
  } else {
    const chinese = chineseTexts(texts);
    check(chinese.length === 0, `${name}: no Chinese in the main content (${chinese.join(', ')})`);
  }
  for (const size of WIDTHS[at.role] || [PHONE]) {
    await page.setViewportSize(size);
    const { scroll, inner } = await page.evaluate(() => ({
      scroll: document.scrollingElement.scrollWidth,
      inner: window.innerWidth,
    }));
    check(scroll <= inner, `${name} at ${size.width} px fits the screen (${scroll} <= ${inner})`);
    shot += 1;
    const file = `${at.lang}-${String(shot).padStart(2, '0')}-${at.role}-${name}-${size.width}.png`;
    await page.screenshot({ path: join(out, file), fullPage: true });
  }
  await page.setViewportSize(PHONE);
  appendFileSync(join(out, 'steps.txt'), `${at.lang} ${at.role} ${at.step} ${name}\n`);
}

/// A CSV text as rows of fields (RFC 4180 quoting).
function parseCsv(text) {
  const rows = [];
  let row = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else field += c;
  }
  if (field || row.length) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}

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

const HOME = { finance1: '/finance', finance2: '/finance', enterprise: '/enterprise', provider: '/provider', auditor: '/audit' };

/// A person signed in with login and password in the walk's language: their own browser
/// context (cookies) and page, on their role's start page.
async function signIn(w, who) {
  const context = await browser.newContext({
    viewport: PHONE,
    locale: w.lang === 'zh' ? 'zh-CN' : 'en-US',
  });
  const page = await context.newPage();
  await page.goto(`${url}/signin?lang=${w.lang}`);
  if (!w.signinShown) {
    w.signinShown = true;
    await page_checks(page, 'signin', [['登录名', 'Login']]);
  }
  await page.fill('#login', plan.people[who].login);
  await page.fill('#password', plan.password);
  await go(page, '#password-signin button[type=submit]', to(HOME[who]));
  equal(new URL(page.url()).pathname, HOME[who], `${who} lands on their start page`);
  check(
    (await text(page, 'header .who')).includes(plan.people[who].name),
    `the header names ${plan.people[who].name}`,
  );
  return page;
}

/// The person's page of this walk, signed in on first use.
async function as(w, who) {
  w.pages[who] ??= await signIn(w, who);
  return w.pages[who];
}

// ---- Finance ----------------------------------------------------------------------------

/// Finance creates the month's run with the month picker and sees the preview; the creator is
/// not offered the approval.
async function createRun(w) {
  const page = await as(w, 'finance1');
  await page.goto(`${url}/finance`);
  equal(await page.getAttribute('#period', 'type'), 'month', 'the period is a month picker');
  await page_checks(page, 'finance', [
    ['结算批次', 'Settlement runs'],
    ['新建结算批次（预览）', 'Create a settlement run (preview)'],
    ['资金池', 'Pool'],
  ]);
  await page.selectOption('#programme', w.programme);
  await page.fill('#period', w.period);
  await go(page, '#create-run button[type=submit]', /\/finance\/runs\/\d+$/);
  w.runPath = new URL(page.url()).pathname;
  w.runId = w.runPath.split('/').pop();
  equal(await page.getAttribute('h1 .status', 'data-status'), 'open', 'the new run is open');
  equal(await page.locator('#lines tbody tr').count(), w.run.lines, 'preview lines');
  equal(await text(page, '#run-total'), w.run.total, 'the preview total');
  check(
    (await page.locator('#approve').count()) === 0 && (await page.locator('#four-eyes-note').count()) === 1,
    'the creator is not offered the approval (four eyes)',
  );
  await page_checks(page, 'run-preview', [['预览明细（批准前核对）', 'Preview lines (check before approving)']]);
}

/// The second finance person approves the run, then posts it through the confirmation, which
/// shows the total, the lines and each payee's share before anything is booked.
async function approveAndPost(w) {
  const page = await as(w, 'finance2');
  await page.goto(`${url}${w.runPath}`);
  await go(page, '#approve', `**${w.runPath}`);
  equal(await page.getAttribute('h1 .status', 'data-status'), 'approved', 'approved by the second person');
  await page_checks(page, 'run-approved', [['批准人', 'Approved by']]);
  await go(page, '#post', `**${w.runPath}/post`);
  equal(await page.getAttribute('#confirmation', 'data-action'), 'post', 'posting asks first');
  equal(await text(page, '#confirm-total'), w.run.total, 'the confirmation total');
  equal(await text(page, '#confirm-lines'), String(w.run.lines), 'the confirmation lines');
  const payees = await page.$$eval('#confirm-payees tbody tr', (rows) =>
    // The payee by its id (the cell names it, then gives the id).
    rows.map((r) => [...r.querySelectorAll('td')].map((d) => d.getAttribute('data-payee') || d.textContent.trim())),
  );
  equal(
    payees,
    w.run.payees.map((p) => [p.payee, String(p.lines), p.amount]),
    "each payee's share in the confirmation",
  );
  await page_checks(page, 'confirm-post', [['确认过账', 'Post the run']]);
  await go(page, '#confirm', `**${w.runPath}`);
  equal(await page.getAttribute('h1 .status', 'data-status'), 'posted', 'posted');
  const persons = await page.$$eval('dd.person', (dds) => dds.map((d) => d.textContent));
  check(
    persons[0].includes(plan.people.finance1.name) && persons[1].includes(plan.people.finance2.name),
    `the run names its creator and approver: ${persons.slice(0, 2).join(' / ')}`,
  );
  await page_checks(page, 'run-posted', [['已过账明细', 'Posted lines']]);
}

/// A payment of more than is owed is refused: the form comes back with the input kept and the
/// reason beside the amount, in the page's language.
async function refusedPayment(w) {
  const page = await as(w, 'finance2');
  const p = w.payment;
  await page.goto(`${url}/finance`);
  await page.fill('#payee', p.payee);
  await page.selectOption('#pay-programme', p.programme);
  await page.fill('#amount', p.too_much);
  await page.fill('#reference', p.reference);
  await go(page, '#payment button[type=submit]', '**/finance/payments');
  equal(await page.getAttribute('#error', 'data-code'), 'amount_exceeds_owed', 'the refusal');
  check(
    await page.evaluate(() => document.querySelector('#amount').nextElementSibling?.id === 'error'),
    'the refusal is beside the amount',
  );
  equal(
    [await page.inputValue('#payee'), await page.inputValue('#amount'), await page.inputValue('#reference')],
    [p.payee, p.too_much, p.reference],
    'the input is kept',
  );
  await page_checks(page, 'payment-refused', [['金额超过待拨付金额', 'the amount is more than is owed']]);
}

/// The second finance person records a payment above the four-eyes amount: confirmed on
/// screen first, then recorded as awaiting another person, who alone is offered Confirm.
async function recordPayment(w) {
  const page = await as(w, 'finance2');
  const p = w.payment;
  await page.goto(`${url}/finance`);
  check((await page.locator('#payment-threshold').count()) === 1, 'the form says which payments need a second person');
  await page.fill('#payee', p.payee);
  await page.selectOption('#pay-programme', p.programme);
  await page.fill('#amount', p.amount);
  await page.fill('#reference', p.reference);
  await go(page, '#payment button[type=submit]', '**/finance/payments');
  equal(await page.getAttribute('#confirmation', 'data-action'), 'payment', 'the payment asks first');
  equal(await page.getAttribute('#confirm-payee', 'data-payee'), p.payee, 'the confirmation payee');
  equal(await text(page, '#confirm-amount'), p.shown, 'the confirmation amount');
  equal(await text(page, '#confirm-after'), p.owed_after, 'owed after the payment');
  const figures = await page.$$eval('#confirmation dd', (dds) => dds.map((d) => d.textContent.trim()));
  check(figures.includes(p.owed_now), `owed now ${p.owed_now} is shown (${figures.join(' | ')})`);
  await page_checks(page, 'confirm-payment', [['确认登记付款', 'Confirm the payment']]);
  await go(page, '#confirm', '**/finance/payments');
  equal(await page.getAttribute('#payment-result', 'data-status'), 'awaiting', 'above the amount: awaits a second person');
  w.paymentId = await page.getAttribute('#payment-result', 'data-payment');
  await page_checks(page, 'payment-awaiting', [['需另一位财务人员确认', 'second finance person']]);
  await page.goto(`${url}/finance`);
  const row = `#awaiting-payments tr[data-payment="${w.paymentId}"]`;
  check(
    (await page.locator(`${row} [data-own=true]`).count()) === 1 &&
      (await page.locator(`#confirm-payment-${w.paymentId}`).count()) === 0,
    'the person who recorded it is not offered Confirm',
  );
}

/// The other finance person confirms the payment; it leaves the list, and the runs list names
/// who created and who approved the run.
async function confirmPayment(w) {
  const page = await as(w, 'finance1');
  await page.goto(`${url}/finance`);
  const row = `#awaiting-payments tr[data-payment="${w.paymentId}"]`;
  check(
    (await text(page, row)).includes(plan.people.finance2.name),
    'the awaiting payment names who recorded it',
  );
  await page_checks(page, 'payment-awaiting-list', [['待确认的付款', 'Payments awaiting confirmation']]);
  await go(page, `#confirm-payment-${w.paymentId}`, '**/finance');
  equal(await page.locator(row).count(), 0, 'the confirmed payment no longer awaits');
  equal(
    await text(page, `section.card.pool[data-programme="${w.programme}"] dl.figures > div:nth-child(2) > dd`),
    w.pool_settled,
    "the programme's settled total",
  );
  const run = await text(page, `#runs tr[data-run="${w.runId}"]`);
  check(
    run.includes(plan.people.finance1.name) && run.includes(plan.people.finance2.name),
    `the runs list names creator and approver: ${run}`,
  );
  await page_checks(page, 'payment-confirmed', [['结算批次', 'Settlement runs']]);
}

/// Finance opens the payee and downloads its statement (CSV): the run's lines are in it, with
/// the amounts the run posted.
async function exportStatement(w) {
  const page = await as(w, 'finance1');
  const e = w.export;
  await page.goto(`${url}/provider`);
  await page.selectOption('select[name=provider]', e.payee);
  await go(page, 'form[action="/provider"] button[type=submit]', to('/provider', { provider: e.payee }));
  await page_checks(page, 'payee', [['对账单', 'Statements']]);
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.click('a[href^="/provider/statement.csv"]'),
  ]);
  const csv = readFileSync(await download.path(), 'utf8');
  writeFileSync(join(out, `${at.lang}-statement-${e.payee}.csv`), csv);
  const [header, ...rows] = parseCsv(csv).filter((r) => r.length > 1);
  const col = (name) => {
    const i = header.indexOf(name);
    check(i >= 0, `the statement has a ${name} column`);
    return i;
  };
  const fields = ['beneficiary', 'provider', 'category', 'chip_origin', 'subsidy'];
  const cols = fields.map(col);
  const runCol = col('run_id');
  const ofRun = rows
    .filter((r) => r[runCol] === w.runId)
    .map((r) => Object.fromEntries(fields.map((f, i) => [f, r[cols[i]]])));
  equal(ofRun, e.rows, `the run's lines in ${e.payee}'s statement`);
}

/// Finance finds the month's run in the runs list, filtered by period and state, and exports
/// the filtered list as CSV (the run's row, its id and total) and as XLSX (a workbook).
async function runsList(w) {
  const page = await as(w, 'finance1');
  await page.goto(`${url}/finance/runs`);
  await page.fill('#filters input[name=period]', w.period);
  await page.selectOption('#filters select[name=state]', 'posted');
  await go(page, '#filters button[type=submit]', to('/finance/runs', { period: w.period, state: 'posted' }));
  const ids = await page.$$eval('table[data-list=runs] tbody tr[data-id]', (rows) => rows.map((r) => r.dataset.id));
  equal(ids, [w.runId], 'the runs of the month, posted');
  await page_checks(page, 'runs-list', [['结算批次', 'Settlement runs']]);
  const [csvDownload] = await Promise.all([page.waitForEvent('download'), page.click('#export-csv')]);
  const csv = readFileSync(await csvDownload.path(), 'utf8').replace(/^\uFEFF/, '');
  writeFileSync(join(out, `${at.lang}-runs-${w.period}.csv`), csv);
  const rows = parseCsv(csv).filter((r) => r.length > 1);
  equal(rows.length, 2, 'the export holds the header and the one run of the filter');
  check(rows[1].includes(w.runId), `the exported row is run ${w.runId}: ${rows[1].join(',')}`);
  const total = w.run.total.replace(/[¥,]/g, '');
  check(rows[1].includes(total), `the exported row has the run's total ${total}: ${rows[1].join(',')}`);
  const [xlsxDownload] = await Promise.all([page.waitForEvent('download'), page.click('#export-xlsx')]);
  const xlsx = readFileSync(await xlsxDownload.path());
  check(xlsx.subarray(0, 2).toString() === 'PK', 'the XLSX export is a workbook (a zip)');
}

// ---- Enterprise -------------------------------------------------------------------------

/// The enterprise checks its balance card of each programme, figure by figure.
async function checkBalance(w) {
  const page = await as(w, 'enterprise');
  await page.goto(`${url}/enterprise`);
  for (const card of w.enterprise.cards) {
    const c = `section.card.balance[data-programme="${card.programme}"]`;
    const figure = (selector) => text(page, `${c} ${selector}`);
    const shown = {
      programme: card.programme,
      // The cap and pending have no class of their own: the first and third figures.
      cap: await figure('dl.figures > div:nth-child(1) > dd'),
      entitled: await figure('dd.entitled'),
      settled: await figure('dd.paid-text'),
      pending: await figure('dl.figures > div:nth-child(3) > dd'),
      remaining: await figure('dd.remaining'),
      paid_out_self: await figure('dd.paid-out-self'),
      paid_out_providers: await figure('dd.paid-out-providers'),
    };
    equal(shown, card, `${card.programme}'s figures`);
  }
  equal(await text(page, '#received-total'), w.enterprise.settled_total, 'settled this year');
  await page_checks(page, 'balance', [
    ['应享', 'Entitled'],
    ['已结算', 'Settled'],
    ['已代付给服务商', 'Paid out to providers on its behalf'],
    ['待结算', 'Pending'],
    ['额度上限', 'Cap'],
  ]);
}

/// The enterprise opens the explanation of one of its posted lines: the programme, the ratio
/// as a percentage and why, the base and the records it came from.
async function explainLine(w) {
  const page = await as(w, 'enterprise');
  await page.goto(`${url}/enterprise`);
  const links = page.locator(`table[data-list=posted-lines] a.explain-link[href*="/runs/${w.runId}/"]`);
  check((await links.count()) > 0, `the enterprise's lines of run ${w.runId} link their explanation`);
  await go(page, `table[data-list=posted-lines] a.explain-link[href*="/runs/${w.runId}/"] >> nth=0`, /\/enterprise\/runs\/\d+\/explain/);
  const body = (await mainTexts(page)).join('\n');
  check(/\d+(\.\d+)?\s?%/.test(body), 'the ratio is shown as a percentage');
  await page_checks(page, 'explanation', [
    ['明细说明', 'Why this amount'],
    ['计算依据', 'Why'],
    ['来源用量记录', 'Usage records it came from'],
  ]);
}

// ---- Provider ---------------------------------------------------------------------------

/// The provider checks what it is owed, then voids one of its records: the record is shown
/// with what voiding does, and voided on confirmation.
async function voidRecord(w) {
  const page = await as(w, 'provider');
  await page.goto(`${url}/provider`);
  const p = w.provider.payables;
  const blocks = await page.$$eval('#payables h3', (hs) =>
    hs.map((h) => ({
      programme: h.getAttribute('data-programme'),
      figures: [...h.nextElementSibling.querySelectorAll('dd')].map((d) => d.textContent.trim()),
    })),
  );
  const block = blocks.find((b) => b.programme === p.programme);
  check(block !== undefined, `the payables name ${p.programme}`);
  equal(
    block.figures,
    [p.settled, p.paid_out, p.outstanding],
    'settled, paid out and outstanding',
  );
  // Its rejected records, each said in the page's language with the record and field named.
  await page_checks(page, 'provider', [
    ['作废用量记录', 'Void a usage record'],
    ['的计费项不在目录中。', 'its SKU is not in the registry.'],
    ['的企业不在目录中。', 'its beneficiary is not in the registry.'],
    ['的结束时间不晚于开始时间。', 'its end is not after its start.'],
  ]);
  const v = w.void;
  await page.fill('#record_id', v.record);
  await page.fill('#reason', v.reason);
  await go(page, '#void-form button[type=submit]', '**/provider/void');
  equal(await page.getAttribute('#confirmation', 'data-action'), 'void', 'voiding asks first');
  equal(await text(page, '#confirm-record'), v.record, 'the record to void');
  equal(await text(page, '#confirm-amount'), v.amount, "the record's amount");
  await page_checks(page, 'confirm-void', [['确认作废', 'Void the record']]);
  await go(page, '#confirm', '**/provider/void');
  equal(await page.getAttribute('#void-result', 'data-voided'), 'true', 'voided');
  await page_checks(page, 'voided', [['记录已作废', 'The record is voided']]);
}

/// The provider finds the record it voided in its usage records, by id, and sees it void;
/// another provider's records are not in its list.
async function findRecord(w) {
  const page = await as(w, 'provider');
  const v = w.void;
  await page.goto(`${url}/records`);
  await page.fill('#filters input[name=q]', v.record);
  await page.selectOption('#filters select[name=void]', 'yes');
  await go(page, '#filters button[type=submit]', to('/records', { q: v.record, void: 'yes' }));
  const ids = await page.$$eval('table[data-list=records] tbody tr[data-id]', (rows) => rows.map((r) => r.dataset.id));
  check(ids.length === 1 && ids[0].endsWith(v.record), `the voided record ${v.record} is found: ${ids.join(', ')}`);
  await page_checks(page, 'records-list', [['用量记录', 'Usage records']]);
}

// ---- Auditor ----------------------------------------------------------------------------

/// The journal's rows as [journal id, time and person, kind, reference].
async function journal(page) {
  return page.$$eval('#journal tbody tr', (rows) =>
    rows
      .map((r) => [...r.querySelectorAll('td[rowspan]')].map((d) => d.textContent.trim()))
      .filter((cells) => cells.length === 4),
  );
}

/// The auditor filters the journal by the run and by the payments account, and finds the
/// posting under the approver's name and the payment under the confirming person's.
async function auditTrail(w) {
  const page = await as(w, 'auditor');
  await page.goto(`${url}/audit`);
  equal(await page.getAttribute('#balanced', 'data-balanced'), 'true', 'the trial balance balances');
  await page.fill('form.filters input[name=run]', w.runId);
  await go(page, 'form.filters button[type=submit]', to('/audit', { run: w.runId }));
  const posting = (await journal(page)).find((j) => j[3] === `run:${w.runId}`);
  check(posting !== undefined, `the run's journal is listed under the run filter`);
  check(
    posting[1].includes(plan.people.finance2.name),
    `the posting is under ${plan.people.finance2.name}: ${posting[1]}`,
  );
  await page_checks(page, 'journal-run', [['记账凭证', 'Journal'], ['结算过账', 'Settlement']]);
  await page.fill('form.filters input[name=run]', '');
  await page.fill('form.filters input[name=account]', 'paid:');
  await go(page, 'form.filters button[type=submit]', to('/audit', { account: 'paid:' }));
  const payment = (await journal(page)).find((j) => j[3] === w.payment.reference);
  check(payment !== undefined, `the payment ${w.payment.reference} is listed under the account filter`);
  check(
    payment[1].includes(plan.people.finance1.name),
    `the payment is booked under ${plan.people.finance1.name}, who confirmed it: ${payment[1]}`,
  );
  await page_checks(page, 'journal-payments', [['付款', 'Payment'], ['试算平衡表', 'Trial balance']]);
}

/// The auditor filters the audit log by person and action: the run's posting is there under
/// the approver's name, and the chain is intact.
async function auditLog(w) {
  const page = await as(w, 'auditor');
  await page.goto(`${url}/audit/log`);
  equal(await page.getAttribute('#chain', 'data-intact'), 'true', 'the audit chain is intact');
  await page.fill('#filters input[name=actor]', plan.people.finance2.name);
  await page.selectOption('#filters select[name=action]', 'run.post');
  await go(page, '#filters button[type=submit]', to('/audit/log', { action: 'run.post' }));
  const rows = await page.$$eval('table[data-list=audit] tbody tr[data-id]', (rs) =>
    rs.map((r) => [...r.querySelectorAll('td')].map((d) => d.textContent.trim())),
  );
  check(rows.length > 0, 'postings by the approver are listed');
  check(
    rows.every((r) => r.some((c) => c.includes(plan.people.finance2.name)) && r.some((c) => c.endsWith('run.post'))),
    `every row is a posting by ${plan.people.finance2.name}`,
  );
  check(rows.some((r) => r.some((c) => c.includes(w.runId))), `run ${w.runId}'s posting is among them`);
  await page_checks(page, 'audit-log', [['审计日志', 'Audit log']]);
}

/// Each role's steps, in the order the month runs; a new page of a role gets its own function
/// here, in its role's list.
const WALK = [
  ['finance', [createRun, approveAndPost, refusedPayment, recordPayment, confirmPayment, exportStatement, runsList]],
  ['enterprise', [checkBalance, explainLine]],
  ['provider', [voidRecord, findRecord]],
  ['auditor', [auditTrail, auditLog]],
];

let failed = false;
try {
  for (const w of plan.walks) {
    w.pages = {};
    at.lang = w.lang;
    for (const [role, steps] of WALK) {
      at.role = role;
      for (const step of steps) {
        at.step = step.name;
        try {
          await step(w);
        } catch (e) {
          for (const page of Object.values(w.pages)) {
            await page
              .screenshot({ path: join(out, `FAILED-${at.lang}-${at.role}-${at.step}-${page.url().split('/').pop().replace(/\W/g, '_')}.png`), fullPage: true })
              .catch(() => {});
          }
          throw new Error(`${where()}: ${e.message}`, { cause: e });
        }
      }
    }
    for (const page of Object.values(w.pages)) await page.context().close();
  }
} catch (e) {
  failed = true;
  console.error(`FAILED at ${e.message}\n${e.cause?.stack || ''}`);
} finally {
  await browser.close();
}
console.log(`screenshots in ${out}`);
process.exit(failed ? 1 : 0);
