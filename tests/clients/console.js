// Drives Debian's chromium (headless, through playwright-core) for tests/integration/test_console.py: one JSON
// command per stdin line, one JSON answer per stdout line ({ok, value} or {ok: false, error}), so the test runs
// REST calls between browser steps and keeps every assertion in Python. Env: BASE (the stack through nginx),
// CHROMIUM (default /usr/bin/chromium).
'use strict';
const readline = require('readline');
const { chromium } = require('playwright-core');

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-dev-shm-usage'],  // root in CI containers; small /dev/shm
  });
  const context = await browser.newContext({ viewport: { width: 1200, height: 800 }, baseURL: process.env.BASE });
  const page = await context.newPage();
  const problems = [];  // CSP violations and script errors, for the test to assert there are none
  // (a refused data call logs "Failed to load resource": that is the 401/403 views under test, not a problem)
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(String(e)));
  const ops = {
    goto: async (c) => { await page.goto(c.url, { waitUntil: 'load' }); return page.url(); },
    url: async () => page.url(),
    fill: async (c) => page.fill(c.selector, c.value),
    click: async (c) => page.click(c.selector),
    submit: async (c) => Promise.all([page.waitForURL(c.until, { timeout: c.timeout || 15000 }), page.click(c.selector)])
      .then(() => page.url()),
    wait: async (c) => { await page.waitForSelector(c.selector, { timeout: c.timeout || 15000, state: c.state || 'visible' }); return true; },
    waitText: async (c) => {
      await page.waitForFunction(([s, t]) => [...document.querySelectorAll(s)].some((e) => e.textContent.includes(t)),
        [c.selector, c.text], { timeout: c.timeout || 15000 });
      return true;
    },
    text: async (c) => page.$eval(c.selector, (e) => e.textContent),
    texts: async (c) => page.$$eval(c.selector, (es) => es.map((e) => e.textContent)),
    count: async (c) => page.$$eval(c.selector, (es) => es.length),
    eval: async (c) => page.evaluate(c.js),
    screenshot: async (c) => { await page.screenshot({ path: c.path }); return c.path; },
    problems: async () => problems.splice(0),
  };
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (!line.trim()) continue;
    const c = JSON.parse(line);
    if (c.op === 'close') break;
    let out;
    try {
      out = { ok: true, value: await ops[c.op](c) };
    } catch (e) {
      out = { ok: false, error: String(e && e.message || e).slice(0, 2000) };
    }
    process.stdout.write(JSON.stringify(out === undefined ? { ok: true } : out) + '\n');
  }
  await browser.close();
}

main().catch((e) => { console.error(e); process.exit(1); });
