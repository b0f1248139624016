// Drives headless Debian chromium (playwright-core) for vcgate's
// WebTransport integration tests.  It serves wt_page.html on 127.0.0.1,
// opens it, and then runs one JSON command per stdin line:
//   {"id": N, "fn": "wtOpen", "args": [...]}  ->  {"id": N, "result": ...}
// It prints {"ready": true, "page": URL} once the page is loaded and exits
// when stdin closes.  Run it inside a private network namespace; the
// resolver rules keep chromium off any network in any case.
//
// Environment (for tests of pages other than wt_page.html):
//   WT_PAGE_URL   open this URL instead of the served wt_page.html
//   WT_CONSOLE=1  also report the page's console messages and uncaught errors
//                 on stdout, in order, as {"console": {"type", "text", "args"}}
//                 and {"pageerror": "..."}; a Uint8Array argument is given as
//                 {"u8": base64}, so tests can check the bytes a page logged.
//   WT_V6_LOOPBACK=1  let chromium reach [::1] too (see the resolver rules)
"use strict";
const http = require("http");
const fs = require("fs");
const path = require("path");
const { chromium } = require("playwright-core");

const PAGE = fs.readFileSync(path.join(__dirname, "wt_page.html"));

const { out, serve } = require("./jsonl.js");

async function main() {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
    res.end(PAGE);
  });
  await new Promise(r => server.listen(0, "127.0.0.1", r));
  const url = "http://127.0.0.1:" + server.address().port + "/";
  // WT_V6_LOOPBACK=1 also exempts the IPv6 loopback literal from the
  // resolver rule (an IP literal goes through the rules too): tests that
  // connect to https://[::1]:PORT need it; nothing beyond loopback opens.
  let rules = "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost";
  if (process.env.WT_V6_LOOPBACK) rules += ", EXCLUDE ::1";
  const args = [
    "--host-resolver-rules=" + rules,
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--no-sandbox", "--headless",
  ];
  if (process.env.WT_NETLOG) args.push("--log-net-log=" + process.env.WT_NETLOG);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true, args,
  });
  const page = await browser.newPage();
  page.on("console", m => process.stderr.write("page: " + m.text() + "\n"));
  if (process.env.WT_CONSOLE) {
    // Arguments are read asynchronously; a promise chain keeps the reports
    // in the order the page logged them.
    let chain = Promise.resolve();
    page.on("console", m => {
      chain = chain.then(async () => {
        const args = await Promise.all(m.args().map(a => a.evaluate(v => {
          if (v instanceof Uint8Array) {
            let s = "";
            for (let i = 0; i < v.length; i += 0x8000) s += String.fromCharCode.apply(null, v.subarray(i, i + 0x8000));
            return { u8: btoa(s) };
          }
          return (typeof v === "object" && v !== null) ? String(v) : v;
        }).catch(e => ({ unreadable: String(e) }))));
        out({ console: { type: m.type(), text: m.text(), args } });
      });
    });
    page.on("pageerror", e => {
      process.stderr.write("page error: " + String(e) + "\n");
      chain = chain.then(() => out({ pageerror: String(e) }));
    });
  }
  const target = process.env.WT_PAGE_URL || url;
  await page.goto(target);
  out({ ready: true, page: target });

  // "reload": a fresh document.  Chromium throttles a document's
  // WebTransport handshakes after a number of failures (against port
  // scanning), so tests that are refused many times reload between.
  serve((fn, a) => fn === "reload" ? page.reload().then(() => true)
    : page.evaluate(([f, args]) => window[f](...args), [fn, a]), async () => {
    await browser.close().catch(() => {});
    server.close();
  });
}

main().catch(e => { out({ fatal: String(e) }); process.exit(1); });
