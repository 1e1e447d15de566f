// A headless chromium for the pytest suite, driven over stdin/stdout: one JSON command per
// line in, one JSON reply per line out ({id, ok, value} or {id, ok: false, error}). The test
// logic stays in Python (tests/browser_driver.py, tests/test_browser_chat_page.py); this only
// turns commands into playwright calls.
//
// Usage: node driver.mjs USER_DATA_DIR   (a fresh, empty folder; removed by the caller)
import readline from "node:readline";
import { chromium } from "playwright-core";

const CHROMIUM = process.env.MULLAMA_CHROMIUM || "/usr/bin/chromium";
// Without the background-networking flags chromium keeps trying to reach Google's services,
// which on a machine without a network means retries for as long as it runs.
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const userDataDir = process.argv[2];
if (!userDataDir) {
  process.stderr.write("usage: node driver.mjs USER_DATA_DIR\n");
  process.exit(2);
}

const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: CHROMIUM,
  headless: true,
  args: ARGS,
  viewport: { width: 1100, height: 800 },
});
const page = context.pages()[0] || (await context.newPage());
page.setDefaultTimeout(15000);

const pageErrors = []; // uncaught exceptions in the page: a test checks there are none
const consoleErrors = [];
const chatRequests = []; // the bodies the page posted to /v1/chat/completions
page.on("pageerror", (error) => pageErrors.push(String(error)));
page.on("console", (message) => {
  if (message.type() === "error") consoleErrors.push(message.text());
});
page.on("request", (request) => {
  if (request.url().endsWith("/v1/chat/completions") && request.method() === "POST") {
    chatRequests.push({ body: request.postData(), headers: request.headers() });
  }
});

const hanging = new Map(); // pattern -> routes held unanswered until `unroute`

const ops = {
  async goto({ url }) {
    const response = await page.goto(url);
    return { status: response.status(), contentType: response.headers()["content-type"] };
  },
  reload: async () => (await page.reload()).status(),
  click: ({ selector }) => page.click(selector),
  fill: ({ selector, value }) => page.fill(selector, value),
  press: ({ selector, key }) => page.press(selector, key),
  text: ({ selector }) => page.textContent(selector),
  // A JavaScript expression evaluated in the page (a promise is awaited).
  eval: ({ expression }) => page.evaluate(expression),
  // Waits until the expression is truthy; returns its value. Polled from here: playwright's
  // waitForFunction evaluates strings inside the page, which the page's CSP forbids.
  waitFor: async ({ expression, timeoutMs }) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await page.evaluate(expression);
      if (value) return value;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${expression}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  },
  screenshot: async ({ path }) => {
    await page.screenshot({ path, fullPage: true });
    return path;
  },
  chatRequests: () => chatRequests.splice(0),
  errors: () => ({ page: pageErrors.splice(0), console: consoleErrors.splice(0) }),
  // Answers requests matching `pattern` with a canned response (or holds them unanswered).
  route: async ({ pattern, status, headers, body, hang }) => {
    await page.route(pattern, (route) => {
      if (hang) {
        if (!hanging.has(pattern)) hanging.set(pattern, []);
        hanging.get(pattern).push(route);
        return;
      }
      return route.fulfill({ status, headers, body });
    });
  },
  unroute: async ({ pattern }) => {
    await page.unroute(pattern);
    for (const route of hanging.get(pattern) || []) await route.abort().catch(() => {});
    hanging.delete(pattern);
  },
  close: async () => {
    await context.close();
    return "closed";
  },
};

const input = readline.createInterface({ input: process.stdin });
for await (const line of input) {
  if (!line.trim()) continue;
  let id = null;
  try {
    const command = JSON.parse(line);
    id = command.id;
    const op = ops[command.op];
    if (!op) throw new Error(`unknown op ${command.op}`);
    const value = await op(command);
    process.stdout.write(JSON.stringify({ id, ok: true, value: value ?? null }) + "\n");
    if (command.op === "close") break;
  } catch (error) {
    process.stdout.write(JSON.stringify({ id, ok: false, error: String(error.stack || error) }) + "\n");
  }
}
// stdin closed (the test ended, or pytest died): make sure chromium goes with us.
await context.close().catch(() => {});
process.exit(0);
