#!/bin/bash
# contrib/bench/run.sh: benchmark vcgate against the reference Node.js relay
# (contrib/bench/ws-relay.js, the `ws` package) on loopback, and write the
# table into BENCHMARKS.md (between the bench:begin / bench:end markers).
#
#   contrib/bench/run.sh [--quick] [--repeats N] [--targets "vcgate node vcgate-w2 vcgate-nats vcgate-wt"]
#                        [--no-write] [--out DIR] [--soak SECS]
#
# Servers are started one at a time on free loopback ports; the server is
# pinned to CPU 0 and loadgen to CPU 1 (vcgate-w2, two worker threads, is
# not pinned).  vcgate-nats runs two vcgate processes joined by a
# nats-server (all three pinned to CPU 0, so the comparison stays "one core
# of server"), with the clients of every room split over both.  vcgate-wt
# is vcgate (CPU 0) with loadgen speaking WebTransport (https://).  Every
# scenario runs --repeats times (default 3, interleaved over the targets)
# and the table shows medians, because this machine's hypervisor stalls
# cores now and then.  Everything started is killed by PID on exit.
# Durations are bounded: a full run takes about 12 minutes, --quick about 1.
# --soak SECS adds one vcgate meeting run of SECS at 70% of its sustained
# rate with the server's RSS sampled every second (issue: memory flat).
set -uo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bench="$top/contrib/bench"
LG="$top/contrib/loadgen/loadgen"
VCG="$top/core/vcgate"

quick=0; repeats=""; write=1; out=""; soak=0
targets="vcgate node vcgate-w2 vcgate-nats vcgate-wt"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --repeats) repeats=$2; shift ;;
    --targets) targets=$2; shift ;;
    --no-write) write=0 ;;
    --out) out=$2; shift ;;
    --soak) soak=$2; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

if [ "$quick" = 1 ]; then
  : "${repeats:=1}"; MEET_DUR=2; STEP=1; FACTOR=1.5; REFINE=0; CONNS=2000; HOLD=1
else
  : "${repeats:=3}"; MEET_DUR=3; STEP=1.2; FACTOR=1.3; REFINE=2; CONNS=10000; HOLD=2
fi
MEET_START=250   # saturate meeting: packets/s per sender at the first step (100k delivered/s)
FAN_START=500    # saturate fanout: packets/s of the one sender (~100k delivered/s)

[ -n "$out" ] || out=$(mktemp -d /tmp/vcgate-bench.XXXXXX)
mkdir -p "$out"
results="$out/results.tsv"
: > "$results"
log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }

# ---- build ---------------------------------------------------------------
if [ ! -x "$VCG" ]; then
  log "building vcgate"
  (cd "$top" && { [ -x configure ] || autoreconf -fi; } && { [ -f Makefile ] || ./configure; } &&
   make -j"$(nproc)") >"$out/build.log" 2>&1 || { echo "build failed: $out/build.log" >&2; exit 1; }
fi
make -C "$top/contrib" >"$out/build-loadgen.log" 2>&1 || { echo "loadgen build failed: $out/build-loadgen.log" >&2; exit 1; }
have_node=0
if command -v node >/dev/null; then
  [ -d "$bench/node_modules/ws" ] || npm install --prefix "$bench" --no-audit --no-fund >"$out/npm.log" 2>&1
  [ -d "$bench/node_modules/ws" ] && have_node=1
fi
have_wt=0
if [ -f "$top/plugins/webtransport/.libs/webtransport.so" ] && "$LG" --help 2>/dev/null | grep -q 'https://'; then have_wt=1; fi
have_nats=0
if [ -f "$top/plugins/nats/.libs/nats.so" ] && command -v nats-server >/dev/null; then have_nats=1; fi
export VCGATE_PLUGIN_PATH="$top/plugins/inproc/.libs:$top/plugins/websocket/.libs:$top/plugins/nats/.libs:$top/plugins/webtransport/.libs"
ulimit -n "$(ulimit -Hn)"

# ---- process management ---------------------------------------------------
PIDS=()
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}
stop_all() {
  local p
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  PIDS=()
}
trap 'stop_all' EXIT
trap 'stop_all; exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
wait_port() { # port, seconds
  local i
  for i in $(seq $(( $2 * 20 ))); do
    ss -Hltn "sport = :$1" 2>/dev/null | grep -q . && return 0
    sleep 0.05
  done
  return 1
}

vcg_conf() { # file port workers bus-snippet [extra transport group]
  cat > "$1" <<EOF
core = { workers = $3; log_level = "warn"; max_connections = 20000; };
transports = ( { plugin = "websocket"; listen = "127.0.0.1:$2"; }${5:+, $5} );
bus = $4;
EOF
}

# Start target $1; sets URLS (loadgen --url arguments) and SPID (the pid whose RSS counts).
start_target() {
  local t=$1 p p2 np
  URLS=(); SPID=""
  case "$t" in
    vcgate|vcgate-w2)
      p=$(free_port)
      if [ "$t" = vcgate ]; then
        vcg_conf "$out/$t.conf" "$p" 1 '{ plugin = "inproc"; }'
        taskset -c 0 "$VCG" -c "$out/$t.conf" 2>>"$out/$t.log" & SPID=$!
      else
        vcg_conf "$out/$t.conf" "$p" 2 '{ plugin = "inproc"; }'
        "$VCG" -c "$out/$t.conf" 2>>"$out/$t.log" & SPID=$!
      fi
      PIDS+=("$SPID")
      wait_port "$p" 10 || { log "$t did not listen (see $out/$t.log)"; return 1; }
      URLS=(--url "ws://127.0.0.1:$p") ;;
    node)
      p=$(free_port)
      taskset -c 0 node "$bench/ws-relay.js" --port "$p" 2>>"$out/node.log" & SPID=$!
      PIDS+=("$SPID")
      wait_port "$p" 10 || { log "node relay did not listen (see $out/node.log)"; return 1; }
      URLS=(--url "ws://127.0.0.1:$p") ;;
    vcgate-wt)
      p=$(free_port)
      local up
      up=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
      vcg_conf "$out/$t.conf" "$p" 1 '{ plugin = "inproc"; }' "{ plugin = \"webtransport\"; listen = \"127.0.0.1:$up\"; }"
      taskset -c 0 "$VCG" -c "$out/$t.conf" 2>>"$out/$t.log" & SPID=$!
      PIDS+=("$SPID")
      wait_port "$p" 10 || { log "$t did not listen (see $out/$t.log)"; return 1; }
      URLS=(--url "https://127.0.0.1:$up") ;;
    vcgate-nats)
      np=$(free_port)
      taskset -c 0 nats-server -a 127.0.0.1 -p "$np" 2>>"$out/nats-server.log" & PIDS+=($!)
      wait_port "$np" 10 || { log "nats-server did not listen"; return 1; }
      p=$(free_port)
      vcg_conf "$out/$t-a.conf" "$p" 1 "{ plugin = \"nats\"; servers = [\"nats://127.0.0.1:$np\"]; }"
      taskset -c 0 "$VCG" -c "$out/$t-a.conf" 2>>"$out/$t-a.log" & SPID=$!
      PIDS+=("$SPID")
      wait_port "$p" 10 || { log "$t (a) did not listen"; return 1; }
      p2=$(free_port)
      vcg_conf "$out/$t-b.conf" "$p2" 1 "{ plugin = \"nats\"; servers = [\"nats://127.0.0.1:$np\"]; }"
      taskset -c 0 "$VCG" -c "$out/$t-b.conf" 2>>"$out/$t-b.log" & PIDS+=($!)
      wait_port "$p2" 10 || { log "$t (b) did not listen"; return 1; }
      URLS=(--url "ws://127.0.0.1:$p" --url "ws://127.0.0.1:$p2") ;;
  esac
  sleep 0.3
  return 0
}

# run_case target rep case max-seconds loadgen-args...: appends "target rep case json" lines.
run_case() {
  local t=$1 rep=$2 c=$3 maxs=$4
  shift 4
  local cmd=(taskset -c 1 "$LG" "${URLS[@]}" --quiet --max-seconds "$maxs" ${SPID:+--server-pid "$SPID"} "$@")
  echo "$t $c: ${cmd[*]}" >> "$out/commands.txt"
  timeout $((maxs + 30)) "${cmd[@]}" 2>>"$out/loadgen.err" | while IFS= read -r line; do
    printf '%s\t%s\t%s\t%s\n' "$t" "$rep" "$c" "$line"
  done >> "$results"
}

best_rate() { # target rep case -> best_rate of the final saturate line
  awk -F'\t' -v t="$1" -v r="$2" -v c="$3" '$1==t && $2==r && $3==c && $4 ~ /"final":true/ {print $4}' "$results" |
    python3 -c 'import sys,json; l=[json.loads(x) for x in sys.stdin]; print(l[-1]["best_rate"] if l else 0)'
}

run_target() { # target rep
  local t=$1 rep=$2 half
  start_target "$t" || { stop_all; return; }
  log "rep $rep: $t (${URLS[*]})"
  case "$t" in
    vcgate|node)
      run_case "$t" "$rep" meeting 60 --scenario meeting --duration "$MEET_DUR" --warmup 1
      run_case "$t" "$rep" sat-meeting 150 --scenario saturate --rate $MEET_START --grace 1 --step-secs $STEP --step-factor $FACTOR --refine $REFINE
      half=$(best_rate "$t" "$rep" sat-meeting)
      if python3 -c "import sys; sys.exit(0 if float('$half') > 0 else 1)"; then
        half=$(python3 -c "print(round(float('$half')/2, 1))")
        run_case "$t" "$rep" half-rate 60 --scenario meeting --rate "$half" --duration "$MEET_DUR" --warmup 1
      fi
      run_case "$t" "$rep" sat-fanout 150 --scenario saturate --rooms 1 --participants 200 --senders 1 \
        --rate $FAN_START --grace 1 --step-secs $STEP --step-factor $FACTOR --refine $REFINE
      run_case "$t" "$rep" connections 90 --scenario connections --connections $CONNS --duration $HOLD ;;
    vcgate-w2)
      run_case "$t" "$rep" sat-meeting 150 --scenario saturate --rate $MEET_START --grace 1 --step-secs $STEP --step-factor $FACTOR --refine $REFINE
      run_case "$t" "$rep" sat-fanout 150 --scenario saturate --rooms 1 --participants 200 --senders 1 \
        --rate $FAN_START --grace 1 --step-secs $STEP --step-factor $FACTOR --refine $REFINE ;;
    vcgate-wt)
      run_case "$t" "$rep" meeting 60 --scenario meeting --duration "$MEET_DUR" --warmup 1
      run_case "$t" "$rep" sat-meeting 150 --scenario saturate --rate 30 --grace 1 --step-secs $STEP --step-factor $FACTOR --refine $REFINE
      run_case "$t" "$rep" sat-fanout 150 --scenario saturate --rooms 1 --participants 200 --senders 1 \
        --rate 75 --grace 1 --step-secs $STEP --step-factor $FACTOR --refine $REFINE ;;
    vcgate-nats)
      run_case "$t" "$rep" meeting 60 --scenario meeting --duration "$MEET_DUR" --warmup 1
      run_case "$t" "$rep" sat-meeting 150 --scenario saturate --rate $MEET_START --grace 1 --step-secs $STEP --step-factor $FACTOR --refine $REFINE
      run_case "$t" "$rep" sat-fanout 150 --scenario saturate --rooms 1 --participants 200 --senders 1 \
        --rate $FAN_START --grace 1 --step-secs $STEP --step-factor $FACTOR --refine $REFINE ;;
  esac
  stop_all
}

started=$(date +%s)
log "output in $out; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for rep in $(seq "$repeats"); do
  for t in $targets; do
    case "$t" in
      node) [ "$have_node" = 1 ] || { log "skip node: node or the ws package missing"; continue; } ;;
      vcgate-nats) [ "$have_nats" = 1 ] || { log "skip vcgate-nats: nats.so or nats-server missing"; continue; } ;;
      vcgate-wt) [ "$have_wt" = 1 ] || { log "skip vcgate-wt: webtransport.so or loadgen https:// support missing"; continue; } ;;
    esac
    run_target "$t" "$rep"
  done
done
if [ "$soak" -gt 0 ] 2>/dev/null; then
  rate=$(awk -F'\t' '$1=="vcgate" && $3=="sat-meeting" && $4 ~ /"final":true/ {print $4}' "$results" |
    python3 -c 'import sys,json,statistics; l=[json.loads(x)["best_rate"] for x in sys.stdin]; l=[x for x in l if x>0]; print(round(0.7*statistics.median(l),1) if l else 100)')
  if start_target vcgate; then
    log "soak: vcgate meeting at $rate pkt/s per sender for ${soak}s"
    run_case vcgate 1 soak $((soak + 60)) --scenario meeting --rate "$rate" --duration "$soak" --warmup 5
  fi
  stop_all
fi
elapsed=$(( $(date +%s) - started ))
log "done in ${elapsed}s; load after: $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- table -----------------------------------------------------------------
cmdline="contrib/bench/run.sh$([ "$quick" = 1 ] && echo ' --quick') --repeats $repeats --targets \"$targets\"$([ "$soak" -gt 0 ] 2>/dev/null && echo " --soak $soak")"
python3 - "$results" "$top/BENCHMARKS.md" "$write" "$cmdline" "$elapsed" "$CONNS" "$out" <<'PY'
import json, os, statistics, subprocess, sys, time
res, md, write, cmdline, elapsed, conns, outdir = sys.argv[1:8]
rows = {}
for line in open(res):
    t, rep, case, js = line.rstrip("\n").split("\t", 3)
    try:
        d = json.loads(js)
    except ValueError:
        continue
    if case.startswith("sat-") and not d.get("final"):
        continue
    rows.setdefault((t, case), []).append(d)

def med(t, case, f):
    vals = []
    for d in rows.get((t, case), []):
        v = f(d)
        if v is not None:
            vals.append(v)
    if vals and isinstance(vals[0], str):
        return sorted(vals)[len(vals) // 2]
    return statistics.median(vals) if vals else None

def lat(k):
    return lambda d: d.get("latency_ms", {}).get(k)

metrics = [
    ("meeting 20x5, 1000 B, 30 pkt/s per sender: p50 latency (ms)", "meeting", lat("p50"), "lower"),
    ("meeting 20x5, 1000 B, 30 pkt/s: p99 latency (ms)", "meeting", lat("p99"), "lower"),
    ("meeting 20x5, 30 pkt/s: lost + duplicated + misrouted", "meeting",
     lambda d: d["lost"] + d["duplicated"] + d["misrouted"], "lower"),
    ("meeting 20x5, 1000 B: sustained delivered msgs/s (p99 <= 50 ms, zero loss)", "sat-meeting",
     lambda d: d.get("best_delivered_msgs_per_s"), "higher"),
    ("meeting 20x5 at half the sustained rate: p50 latency (ms)", "half-rate", lat("p50"), "lower"),
    ("meeting 20x5 at half the sustained rate: p99 latency (ms)", "half-rate", lat("p99"), "lower"),
    ("fanout 1x200, 1000 B: sustained delivered msgs/s (p99 <= 50 ms, zero loss)", "sat-fanout",
     lambda d: d.get("best_delivered_msgs_per_s"), "higher"),
    ("meeting 20x5: server process CPU % at the sustained step", "sat-meeting",
     lambda d: d.get("best_server_cpu_pct"), "info"),
    ("meeting 20x5: CPU 0 / CPU 1 busy % at the sustained step (server / loadgen)", "sat-meeting",
     lambda d: "%.0f / %.0f" % tuple(d["best_cpu_busy_pct"][:2]) if len(d.get("best_cpu_busy_pct", [])) >= 2 else None, "info"),
    ("connections: %s idle, server RSS per connection (bytes)" % conns, "connections",
     lambda d: d.get("rss_per_conn_bytes"), "lower"),
    ("connections: %s idle, held at the end" % conns, "connections", lambda d: d.get("held"), "higher"),
]
targets = ["vcgate", "node", "vcgate-w2", "vcgate-nats", "vcgate-wt"]

def fmt(v):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    if isinstance(v, float) and abs(v) < 100:
        return "%.3f" % v if abs(v) < 10 else "%.1f" % v
    return "{:,.0f}".format(v)

def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception:
        return "?"

model = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-").strip()
out = []
out.append("Command: `%s` (%s s; the raw JSON lines stay on the machine that ran it, in `%s/results.tsv`)." % (cmdline, elapsed, outdir))
out.append("")
out.append("Machine: %s CPUs, %s, kernel %s; run %s; load average before/after in the run log. "
           "Medians of %s repeat(s)." % (sh("nproc"), model, sh("uname -r"), time.strftime("%Y-%m-%d %H:%M %Z"),
                                          max((len(v) for v in rows.values()), default=0)))
out.append("")
out.append("| scenario | vcgate | peer (Node `ws`) | ratio vcgate/peer | vcgate workers=2 (unpinned) | vcgate ×2 + NATS (CPU 0) | vcgate WebTransport |")
out.append("|---|---:|---:|---:|---:|---:|---:|")
for name, case, f, better in metrics:
    v = {t: med(t, case, f) for t in targets}
    ratio = "–"
    if better != "info" and v["vcgate"] is not None and v["node"]:
        ratio = "%.2f" % (v["vcgate"] / v["node"]) + (" (lower is better)" if better == "lower" else "")
    out.append("| %s | %s | %s | %s | %s | %s | %s |" % (name, fmt(v["vcgate"]), fmt(v["node"]), ratio,
                                                        fmt(v["vcgate-w2"]), fmt(v["vcgate-nats"]),
                                                        fmt(v["vcgate-wt"])))
for d in rows.get(("vcgate", "soak"), []):
    out.append("")
    out.append("Soak: vcgate meeting 20x5 at %.1f pkt/s per sender (70%% of its sustained rate) for %.0f s: "
               "%s delivered msgs/s, lost %s, p99 %.3f ms; server RSS %s kB first, %s kB last, %s kB max, "
               "slope %s kB/min over %s samples (second half: %s kB/min); the maximum was first reached "
               "%s s in." % (d["rate"], d["duration"], "{:,.0f}".format(d["delivered_msgs_per_s"]),
               d["lost"], d["latency_ms"]["p99"], d.get("rss_kb_first"), d.get("rss_kb_last"),
               d.get("rss_kb_max"), d.get("rss_slope_kb_per_min"), d.get("rss_samples"),
               d.get("rss_slope_second_half_kb_per_min", "–"), d.get("rss_kb_max_at_s", "–")))
# The loadgen command lines of the first repeat, with ports and pids as
# placeholders, so that a row can be re-run by hand.
cmds, seen = [], set()
try:
    import re
    for line in open(os.path.join(outdir, "commands.txt")):
        key, _, cmd = line.rstrip("\n").partition(": ")
        if key in seen:
            continue
        seen.add(key)
        cmd = re.sub(r"(ws|https)://127\.0\.0\.1:\d+", r"\1://127.0.0.1:PORT", cmd)
        cmd = re.sub(r"--server-pid \d+", "--server-pid PID", cmd)
        cmd = cmd.replace(os.path.dirname(os.path.abspath(md)) + "/", "")
        cmd = re.sub(r"\S*/contrib/loadgen/loadgen", "contrib/loadgen/loadgen", cmd)
        cmds.append("%-24s %s" % (key + ":", cmd))
except OSError:
    pass
if cmds:
    out.append("")
    out.append("loadgen command lines (first repeat; `PORT`/`PID` are the server's):")
    out.append("")
    out.append("```")
    out.extend(cmds)
    out.append("```")
table = "\n".join(out) + "\n"
print(table)
if write == "1":
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    text = open(md).read() if os.path.exists(md) else "# Benchmarks\n\n%s\n%s\n" % (begin, end)
    if begin not in text:
        text += "\n%s\n%s\n" % (begin, end)
    a = text.index(begin) + len(begin)
    b = text.index(end)
    text = text[:a] + "\n" + table + text[b:]
    open(md, "w").write(text)
    print("BENCHMARKS.md updated", file=sys.stderr)
PY
