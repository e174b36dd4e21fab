// Prints a run's settlement statement (结算单) to PDF in headless Chromium (Debian's package,
// driven by playwright-core) and checks the paper: A4 pages, only the statement on them (no
// header, navigation or buttons in print), and the totals in the PDF's text, each page's text
// read back through the fonts' ToUnicode maps. Also saves the PDF and screenshots of the
// statement and of a line's explanation (opened from the run page) at 1280 px and 390 px.
//
// Usage: node statement.mjs --url http://127.0.0.1:8080 --run 1 --total ¥1,234.56 --out DIR
// The finance person signs in with SUANLI_E2E_FINANCE_1 and SUANLI_E2E_PASSWORD. CHROMIUM
// overrides the browser path (default /usr/bin/chromium).

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inflateSync } from 'node:zlib';
import { chromium } from 'playwright-core';

function arg(name) {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && process.argv[i + 1]) return process.argv[i + 1];
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

// The text of each page of a PDF as Chromium (Skia) writes it: objects with Flate streams,
// Type0 fonts with ToUnicode CMaps, text shown by hex glyph strings after `/Fn size Tf`.
function pdfPages(buffer) {
  const raw = buffer.toString('latin1');
  const objects = new Map();
  const objRe = /(\d+) 0 obj\b/g;
  let m;
  while ((m = objRe.exec(raw))) {
    const start = m.index + m[0].length;
    const end = raw.indexOf('endobj', start);
    if (end < 0) break;
    const body = raw.slice(start, end);
    const s = body.indexOf('stream');
    let dict = body;
    let data = '';
    if (s >= 0 && !body.slice(0, s).includes('endstream')) {
      dict = body.slice(0, s);
      let from = start + s + 'stream'.length;
      if (raw[from] === '\r') from += 1;
      if (raw[from] === '\n') from += 1;
      const to = raw.indexOf('endstream', from);
      const bytes = buffer.subarray(from, to);
      try {
        data = dict.includes('/FlateDecode') ? inflateSync(bytes).toString('latin1') : bytes.toString('latin1');
      } catch {
        data = '';
      }
    }
    objects.set(Number(m[1]), { dict, data });
    objRe.lastIndex = end;
  }
  const hex = (h) => parseInt(h, 16);
  const utf16 = (h) => {
    let out = '';
    for (let i = 0; i + 4 <= h.length; i += 4) out += String.fromCharCode(hex(h.slice(i, i + 4)));
    return out;
  };
  // Font object → its code → text map, and how many bytes a code has (two for a Type0 font
  // with Identity-H, one for the Type3 fonts Skia also writes).
  const cmaps = new Map();
  const widths = new Map();
  for (const [num, o] of objects) {
    const t = o.dict.match(/\/ToUnicode\s+(\d+)\s+0\s+R/);
    if (!t) continue;
    const cm = objects.get(Number(t[1]));
    if (!cm) continue;
    const map = new Map();
    for (const block of cm.data.matchAll(/beginbfchar([\s\S]*?)endbfchar/g)) {
      for (const p of block[1].matchAll(/<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>/g)) map.set(hex(p[1]), utf16(p[2]));
    }
    for (const block of cm.data.matchAll(/beginbfrange([\s\S]*?)endbfrange/g)) {
      for (const p of block[1].matchAll(/<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*(<([0-9A-Fa-f]+)>|\[([^\]]*)\])/g)) {
        const lo = hex(p[1]);
        const hi = hex(p[2]);
        if (p[4] !== undefined) {
          const base = hex(p[4]);
          for (let c = lo; c <= hi; c += 1) map.set(c, String.fromCharCode(base + c - lo));
        } else {
          const list = [...p[5].matchAll(/<([0-9A-Fa-f]+)>/g)];
          list.forEach((x, i) => map.set(lo + i, utf16(x[1])));
        }
      }
    }
    cmaps.set(num, map);
    widths.set(num, /\/Subtype\s*\/Type0/.test(o.dict) ? 4 : 2);
  }
  const decode = (map, digits, h) => {
    let out = '';
    for (let i = 0; i + digits <= h.length; i += digits) out += map.get(hex(h.slice(i, i + digits))) ?? '';
    return out;
  };
  // The resources of an object (inline or by reference): font name → font object.
  const fontsOf = (dict) => {
    const fonts = new Map();
    let res = dict.match(/\/Resources\s+(\d+)\s+0\s+R/);
    let text = res ? objects.get(Number(res[1]))?.dict ?? '' : dict;
    const f = text.match(/\/Font\s+(\d+)\s+0\s+R/);
    if (f) text = objects.get(Number(f[1]))?.dict ?? '';
    else {
      const inline = text.match(/\/Font\s*<<([^>]*)>>/);
      text = inline ? inline[1] : '';
    }
    for (const e of text.matchAll(/\/([^\s/<>\[\]()]+)\s+(\d+)\s+0\s+R/g)) fonts.set(e[1], Number(e[2]));
    return fonts;
  };
  const pages = [];
  for (const [, o] of objects) {
    if (!/\/Type\s*\/Page\b(?!s)/.test(o.dict)) continue;
    const box = o.dict.match(/\/MediaBox\s*\[\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*\]/);
    const fonts = fontsOf(o.dict);
    const contents = [];
    const c = o.dict.match(/\/Contents\s+(\d+)\s+0\s+R/);
    if (c) contents.push(Number(c[1]));
    const arr = o.dict.match(/\/Contents\s*\[([^\]]*)\]/);
    if (arr) for (const r of arr[1].matchAll(/(\d+)\s+0\s+R/g)) contents.push(Number(r[1]));
    let text = '';
    for (const n of contents) {
      // A content stream's form XObjects are drawn by name; their text counts for the page.
      const streams = [objects.get(n)?.data ?? ''];
      let map = new Map();
      let digits = 4;
      for (const data of streams) {
        for (const t of data.matchAll(/\/([^\s/<>\[\]()]+)\s+[-\d.]+\s+Tf|<([0-9A-Fa-f]*)>|\bET\b/g)) {
          if (t[1] !== undefined) {
            const font = fonts.get(t[1]);
            map = cmaps.get(font) ?? new Map();
            digits = widths.get(font) ?? 4;
          } else if (t[2] !== undefined) text += decode(map, digits, t[2]);
          else text += '\n';
        }
      }
    }
    pages.push({ width: box ? Number(box[3]) : 0, height: box ? Number(box[4]) : 0, text });
  }
  return pages;
}

const url = arg('url').replace(/\/$/, '');
const run = arg('run');
const total = arg('total');
const out = arg('out');
mkdirSync(out, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  await page.goto(`${url}/signin?lang=zh`);
  await page.fill('#login', env('SUANLI_E2E_FINANCE_1'));
  await page.fill('#password', env('SUANLI_E2E_PASSWORD'));
  await Promise.all([page.waitForNavigation(), page.locator('#password').press('Enter')]);
  const response = await page.goto(`${url}/finance/runs/${run}/statement`);
  check(response.status() === 200, `the statement of run ${run} opens`);
  check((await page.locator('#statement-total').innerText()).trim() === total, `its total is ${total}`);
  for (const width of [1280, 390]) {
    await page.setViewportSize({ width, height: width === 390 ? 844 : 800 });
    const wide = await page.evaluate(() => document.documentElement.scrollWidth);
    check(wide <= width, `the page fits ${width} px (${wide})`);
    await page.screenshot({ path: join(out, `statement-${width}.png`), fullPage: true });
  }
  // A line's explanation, opened from the run page, fits both widths too.
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.goto(`${url}/finance/runs/${run}`);
  const links = await page.locator('a.explain-link').count();
  check(links >= 1, `the run page links its ${links} line(s) to their explanations`);
  await Promise.all([page.waitForNavigation(), page.locator('a.explain-link').last().click()]);
  check((await page.locator('li.ratio-text').count()) >= 1, 'the explanation gives the ratio and why');
  for (const width of [1280, 390]) {
    await page.setViewportSize({ width, height: width === 390 ? 844 : 800 });
    const wide = await page.evaluate(() => document.documentElement.scrollWidth);
    check(wide <= width, `the explanation fits ${width} px (${wide})`);
    await page.screenshot({ path: join(out, `explain-${width}.png`), fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.goto(`${url}/finance/runs/${run}/statement`);
  // On paper: only the statement.
  await page.emulateMedia({ media: 'print' });
  check(!(await page.locator('header').isVisible()), 'the header is not printed');
  check(!(await page.locator('footer').isVisible()), 'the footer is not printed');
  check(!(await page.locator('.no-print').first().isVisible()), 'the back link and hint are not printed');
  check(await page.locator('#statement-lines').isVisible(), 'the lines are printed');
  const pdf = await page.pdf({ format: 'A4', printBackground: false });
  writeFileSync(join(out, 'statement.pdf'), pdf);
  check(pdf.subarray(0, 5).toString('latin1') === '%PDF-', 'a PDF is produced');
  const pages = pdfPages(pdf);
  check(pages.length >= 1, `it has ${pages.length} page(s)`);
  for (const p of pages) {
    check(Math.abs(p.width - 595) < 2 && Math.abs(p.height - 842) < 2, `a page is A4 (${p.width} × ${p.height} pt)`);
  }
  const all = pages.map((p) => p.text).join('\n');
  writeFileSync(join(out, 'statement.txt'), all);
  check(all.includes('结算单'), 'the PDF says 结算单');
  check(all.includes(total), `the PDF carries the total ${total}`);
  check(!all.includes('退出'), 'the header (sign-out) is not on paper');
  // No line is split across two pages: each line's cells, in order, are on one page. Printed
  // once as it is and once half as large again, so that the lines run over several pages.
  const rows = await page.locator('#statement-lines tbody tr').evaluateAll((trs) =>
    trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.innerText)),
  );
  const squeeze = (text) => text.replace(/\s+/g, '').replace(/\ufb01/g, 'fi');
  const whole = (printed, label) => {
    for (const cells of rows) {
      const row = squeeze(cells.join(''));
      const on = printed.filter((p) => squeeze(p.text).includes(row)).length;
      check(on === 1, `${label}: line ${cells[0].trim()} is whole on one page`);
    }
  };
  whole(pages, 'A4');
  const large = await page.pdf({ format: 'A4', scale: 1.5 });
  writeFileSync(join(out, 'statement-large.pdf'), large);
  const largePages = pdfPages(large);
  check(largePages.length > 1, `half as large again it runs over ${largePages.length} pages`);
  for (const p of largePages) {
    check(Math.abs(p.width - 595) < 2 && Math.abs(p.height - 842) < 2, 'each of them is A4');
  }
  whole(largePages, 'half as large again');
  const withLines = largePages.filter((p) => rows.some((cells) => squeeze(p.text).includes(squeeze(cells.join('')))));
  for (const p of withLines) {
    check(p.text.includes('本批变动'), 'a page with lines repeats the table header');
  }
} finally {
  await browser.close();
}
