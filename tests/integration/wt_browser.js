// Drives headless Debian chromium (playwright-core) for vcgate's
// WebTransport integration tests.  It serves wt_page.html on 127.0.0.1,
// opens it, and then runs one JSON command per stdin line:
//   {"id": N, "fn": "wtOpen", "args": [...]}  ->  {"id": N, "result": ...}
// It prints {"ready": true, "page": URL} once the page is loaded and exits
// when stdin closes.  Run it inside a private network namespace; the
// resolver rules keep chromium off any network in any case.
"use strict";
const http = require("http");
const fs = require("fs");
const path = require("path");
const readline = require("readline");
const { chromium } = require("playwright-core");

const PAGE = fs.readFileSync(path.join(__dirname, "wt_page.html"));

function out(o) { process.stdout.write(JSON.stringify(o) + "\n"); }

async function main() {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
    res.end(PAGE);
  });
  await new Promise(r => server.listen(0, "127.0.0.1", r));
  const url = "http://127.0.0.1:" + server.address().port + "/";
  const args = [
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--no-sandbox", "--headless",
  ];
  if (process.env.WT_NETLOG) args.push("--log-net-log=" + process.env.WT_NETLOG);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true, args,
  });
  const page = await browser.newPage();
  page.on("console", m => process.stderr.write("page: " + m.text() + "\n"));
  await page.goto(url);
  out({ ready: true, page: url });

  let pending = 0, closing = false;
  async function finish() {
    if (pending > 0) return;
    await browser.close().catch(() => {});
    server.close();
    process.exit(0);
  }
  const rl = readline.createInterface({ input: process.stdin });
  rl.on("line", async line => {
    let m;
    try { m = JSON.parse(line); } catch (e) { return; }
    pending++;
    try {
      const r = await page.evaluate(([fn, a]) => window[fn](...a), [m.fn, m.args || []]);
      out({ id: m.id, result: r === undefined ? null : r });
    } catch (e) {
      out({ id: m.id, error: String(e) });
    }
    pending--;
    if (closing) finish();
  });
  rl.on("close", () => { closing = true; finish(); });
}

main().catch(e => { out({ fatal: String(e) }); process.exit(1); });
