// Drives headless Debian chromium (playwright-core) for the call page tests
// (test_web_call.py): one browser, one context per participant, each with
// a fake camera and microphone.  Commands, one JSON line each on stdin:
//   {"id": N, "fn": "open", "args": [NAME, URL, {width, height}, INIT_SCRIPT]}
//   {"id": N, "fn": "eval", "args": [NAME, "JS expression"]}
//   {"id": N, "fn": "fill", "args": [NAME, LABEL, VALUE]}  the field labelled LABEL
//   {"id": N, "fn": "click", "args": [NAME, BUTTON]}        the button named BUTTON
//   {"id": N, "fn": "shot", "args": [NAME, PATH, {width, height}]}
//   {"id": N, "fn": "requests", "args": [NAME]}   every URL the page asked for
//   {"id": N, "fn": "close", "args": [NAME]}
// -> {"id": N, "result": ...} or {"id": N, "error": "..."}.  It prints
// {"ready": true} first and exits when stdin closes.  Run it inside a
// private network namespace; the resolver rules keep chromium off any
// network in any case.  WT_NETLOG=FILE writes chromium's netlog there.
"use strict";
const { chromium } = require("playwright-core");

const { out, serve } = require("./jsonl.js");

// Every connection a page opens from script (WebSocket, WebTransport,
// fetch) is recorded in the page too: WebTransport sessions do not show up
// as playwright requests.
// The page's state is sampled too, so a test can tell that a page that
// failed was never "joined" on the way.
const RECORD = `(() => {
  const states = (window.__vcgateStates = []);
  setInterval(() => {
    const s = window.vcgateCall && window.vcgateCall.state;
    if (s && states[states.length - 1] !== s) states.push(s);
  }, 10);
  const seen = (window.__vcgateRequests = []);
  for (const name of ["WebSocket", "WebTransport"]) {
    const Orig = window[name];
    if (typeof Orig !== "function") continue;
    window[name] = new Proxy(Orig, { construct(t, args) { seen.push(name + " " + String(args[0])); return new t(...args); } });
  }
  const f = window.fetch;
  window.fetch = function (input, init) { seen.push("fetch " + String(input && input.url || input)); return f.call(this, input, init); };
})();`;

async function main() {
  const netlog = process.env.WT_NETLOG ? ["--log-net-log=" + process.env.WT_NETLOG] : [];
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [...netlog,
      "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--no-first-run", "--no-sandbox", "--headless",
      "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
      "--auto-accept-this-tab-capture", "--autoplay-policy=no-user-gesture-required",
      // Three pages share one renderer budget: keep hidden ones running.
      "--disable-renderer-backgrounding", "--disable-background-timer-throttling",
      "--disable-backgrounding-occluded-windows",
    ],
  });
  const pages = new Map();
  const commands = {
    async open(name, url, viewport, initScript) {
      const ctx = await browser.newContext({ viewport: viewport || { width: 1280, height: 800 } });
      await ctx.grantPermissions(["camera", "microphone", "clipboard-read", "clipboard-write"]);
      await ctx.addInitScript(RECORD);
      if (initScript) await ctx.addInitScript(initScript);
      const page = await ctx.newPage();
      const requests = [];
      page.on("request", (r) => requests.push(r.url()));
      page.on("websocket", (w) => requests.push(w.url()));
      page.on("console", (m) => process.stderr.write(`${name}: ${m.text()}\n`));
      page.on("crash", () => { process.stderr.write(`${name}: renderer crashed at ${new Date().toISOString()}\n`); page.errors.push("renderer crashed"); });
      page.on("pageerror", (e) => { process.stderr.write(`${name}: page error: ${e}\n`); page.errors.push(String(e)); });
      page.errors = [];
      pages.set(name, { ctx, page, requests });
      await page.goto(url);
      return true;
    },
    async eval(name, expr) {
      return pages.get(name).page.evaluate(expr);
    },
    // As a person would: the form field with this label, the button with this name.
    async fill(name, label, value) {
      await pages.get(name).page.getByLabel(label, { exact: true }).fill(value);
      return true;
    },
    async click(name, button) {
      await pages.get(name).page.getByRole("button", { name: button, exact: true }).click();
      return true;
    },
    async shot(name, path, viewport) {
      const { page } = pages.get(name);
      if (viewport) await page.setViewportSize(viewport);
      await page.waitForTimeout(400); // let the layout settle on the new size
      await page.screenshot({ path });
      return true;
    },
    async requests(name) {
      const { page, requests } = pages.get(name);
      const inPage = await page.evaluate("window.__vcgateRequests || []").catch(() => []);
      return { requests, inPage, errors: page.errors };
    },
    async close(name) {
      const p = pages.get(name);
      pages.delete(name);
      if (p) await p.ctx.close();
      return true;
    },
  };
  out({ ready: true });

  serve((fn, args) => commands[fn](...args), () => browser.close());
}

main().catch((e) => { out({ fatal: String(e) }); process.exit(1); });
