// The command loop of the browser drivers (wt_browser.js, web_browser.js):
// one JSON command per stdin line, {"id": N, "fn": NAME, "args": [...]},
// answered by one line {"id": N, "result": ...} or {"id": N, "error": "..."}
// in the order the commands finish.  When stdin closes and every command
// has answered, finish() runs and the process exits.
"use strict";
const readline = require("readline");

function out(o) { process.stdout.write(JSON.stringify(o) + "\n"); }

function serve(run, finish) {
  let pending = 0, closing = false;
  async function done() {
    if (pending > 0) return;
    await finish().catch(() => {});
    process.exit(0);
  }
  const rl = readline.createInterface({ input: process.stdin });
  rl.on("line", async (line) => {
    let m;
    try { m = JSON.parse(line); } catch (e) { return; }
    pending++;
    try {
      const r = await run(m.fn, m.args || []);
      out({ id: m.id, result: r === undefined ? null : r });
    } catch (e) {
      out({ id: m.id, error: String(e) });
    }
    pending--;
    if (closing) done();
  });
  rl.on("close", () => { closing = true; done(); });
}

module.exports = { out, serve };
