#!/bin/bash
# contrib/bench/run.sh: benchmark vcgate against two references on loopback,
# the bare epoll relay (contrib/bench/bare-relay: the practical limit of one
# core) and the Node.js relay (contrib/bench/ws-relay.js, the `ws` package:
# what a user would write instead), print the ratios, then the table, and
# write the table into BENCHMARKS.md (between the bench:begin / bench:end
# markers).
#
#   contrib/bench/run.sh [--quick] [--repeats N] [--no-write] [--out DIR] [--soak SECS]
#                        [--targets "vcgate bare node vcgate-w2 vcgate-nats vcgate-natsb vcgate-wt"]
#   contrib/bench/run.sh --overload [--cpu-quota PCT] [--overload-mult M]
#                        [--targets "vcgate bare"] [--out DIR]
#
# Servers are started one at a time on free loopback ports; the server is
# pinned to CPU 0 and loadgen to CPU 1 (vcgate-w2, two worker threads, is
# not pinned).  vcgate-nats runs two vcgate processes joined by a
# nats-server (all three pinned to CPU 0, so the comparison stays "one core
# of server"), with the clients of every room split over both.  vcgate-wt
# is vcgate (CPU 0) with loadgen speaking WebTransport (https://).  Every
# scenario runs --repeats times (default 3, interleaved over the targets)
# and the table shows medians, because this machine's hypervisor stalls
# cores now and then.  Searches start at a per-target load near a quarter
# of what that target is known to carry and step down when even that
# fails, so every target gets a figure.  Everything started is killed by
# PID on exit.  Durations are bounded: --quick about 2 minutes, a full run
# about 20 minutes (each loadgen call has its own --max-seconds).
# --soak SECS adds one vcgate meeting run of SECS at 70% of its sustained
# rate with the server's RSS sampled every second (issue: memory flat).
#
# --overload (only this, about 3 minutes per target): holds the server to
# --cpu-quota percent of one core (default 30) with a cgroup CPU quota (v2
# cpu.max, or v1 cpu.cfs_quota_us where the cpu controller is on v1; a
# child cgroup made for the run and removed on exit), finds the most call-
# shape rooms it sustains so held, then offers 3 s at 1x, 10 s at
# --overload-mult (default 2) times that and 5 s at 0.5x, clear and
# --encrypted, and reports latency per class and per 250 ms window,
# delivered fractions, congestion notices and the recovery time.
set -uo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bench="$top/contrib/bench"
LG="$top/contrib/loadgen/loadgen"
VCG="$top/core/vcgate"
BARE="$bench/bare-relay"

quick=0; repeats=""; write=1; out=""; soak=0; targets=""
overload=0; quota=30; omult=2
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --repeats) repeats=$2; shift ;;
    --targets) targets=$2; shift ;;
    --no-write) write=0 ;;
    --out) out=$2; shift ;;
    --soak) soak=$2; shift ;;
    --overload) overload=1 ;;
    --cpu-quota) quota=$2; shift ;;
    --overload-mult) omult=$2; shift ;;
    -h|--help) sed -n '2,37p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [ "$overload" = 1 ]; then
  : "${targets:=vcgate bare}"
elif [ "$quick" = 1 ]; then
  : "${targets:=vcgate bare node vcgate-nats vcgate-natsb vcgate-wt}"
else
  : "${targets:=vcgate bare node vcgate-w2 vcgate-nats vcgate-natsb vcgate-wt}"
fi
case "$quota" in ''|*[!0-9]*) echo "run.sh: --cpu-quota takes a whole percent" >&2; exit 2 ;; esac
[ "$quota" -ge 5 ] && [ "$quota" -le 100 ] || { echo "run.sh: --cpu-quota 5..100" >&2; exit 2; }

# Search parameters: steps double the load from the target's start, a
# failing step is retried once (unless it failed by far), then the bracket
# is bisected REFINE times (4: within 2^(1/16) = 4.4%; 2: within 19%).
if [ "$quick" = 1 ]; then
  : "${repeats:=1}"; MEET_DUR=2; STEP=0.8; CALL_STEP=1; REFINE=2; CONNS=2000; HOLD=1
else
  : "${repeats:=3}"; MEET_DUR=3; STEP=1.2; CALL_STEP=2; REFINE=4; CONNS=10000; HOLD=2
fi
FACTOR=2
SEARCH=(--grace 0.5 --step-factor $FACTOR --refine $REFINE)

# Start loads per target, about a quarter of what each carried on a 2-vCPU
# EPYC (BENCHMARKS.md): meeting packets/s per sender (x400 = delivered
# msgs/s), fanout packets/s of the one sender (x199), call shape rooms.
start_meeting() { case "$1" in node) echo 100 ;; vcgate-wt) echo 50 ;; vcgate-nats*) echo 250 ;; *) echo 1000 ;; esac; }
start_fanout() { case "$1" in node) echo 100 ;; vcgate-wt) echo 100 ;; vcgate-nats*) echo 1000 ;; *) echo 2000 ;; esac; }
start_call() { case "$1" in node) echo 4 ;; vcgate-wt) echo 4 ;; *) echo 32 ;; esac; }

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

# ---- the overload cgroup ----------------------------------------------------
# Our own child cgroup with a CPU quota: cgroup v2 (cpu.max) where a v2
# hierarchy has the cpu controller, else v1's cpu controller
# (cpu.cfs_quota_us).  Made for the run, removed on exit.
CG=""
cg_setup() { # percent
  local pct=$1 period=100000 root
  for root in /sys/fs/cgroup /sys/fs/cgroup/unified; do
    [ -f "$root/cgroup.controllers" ] && grep -qw cpu "$root/cgroup.controllers" || continue
    grep -qw cpu "$root/cgroup.subtree_control" 2>/dev/null || echo +cpu > "$root/cgroup.subtree_control" 2>/dev/null
    mkdir "$root/vcgate-bench.$$" 2>/dev/null || continue
    CG="$root/vcgate-bench.$$"
    if echo "$((pct * period / 100)) $period" > "$CG/cpu.max" 2>/dev/null; then
      log "cgroup v2 $CG: cpu.max $(cat "$CG/cpu.max")"
      return 0
    fi
    rmdir "$CG"; CG=""
  done
  root=/sys/fs/cgroup/cpu
  if [ -f "$root/cpu.cfs_quota_us" ] && mkdir "$root/vcgate-bench.$$" 2>/dev/null; then
    CG="$root/vcgate-bench.$$"
    if echo $period > "$CG/cpu.cfs_period_us" && echo $((pct * period / 100)) > "$CG/cpu.cfs_quota_us"; then
      log "cgroup v1 $CG (no v2 hierarchy has the cpu controller here): cpu.cfs_quota_us $(cat "$CG/cpu.cfs_quota_us") of $(cat "$CG/cpu.cfs_period_us")"
      return 0
    fi
    rmdir "$CG"; CG=""
  fi
  return 1
}
cg_add() { # pid: the whole process (all its threads) into our cgroup
  echo "$1" > "$CG/cgroup.procs"
}
cg_remove() {
  [ -n "$CG" ] || return 0
  local i
  for i in $(seq 50); do rmdir "$CG" 2>/dev/null && break; sleep 0.1; done
  [ -d "$CG" ] && log "could not remove $CG (still holds: $(cat "$CG/cgroup.procs" | tr '\n' ' '))"
  CG=""
}
trap 'stop_all; cg_remove' EXIT
trap 'stop_all; cg_remove; exit 130' INT TERM

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
    bare)
      p=$(free_port)
      taskset -c 0 "$BARE" --port "$p" 2>>"$out/bare.log" & SPID=$!
      PIDS+=("$SPID")
      wait_port "$p" 10 || { log "bare relay did not listen (see $out/bare.log)"; return 1; }
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
    vcgate-nats|vcgate-natsb)
      # vcgate-natsb: the same with the bus's batch option (a loop turn's
      # packets of a room in one NATS message; vcgate nodes only).
      local batch=""
      [ "$t" = vcgate-natsb ] && batch=" batch = true;"
      np=$(free_port)
      taskset -c 0 nats-server -a 127.0.0.1 -p "$np" 2>>"$out/nats-server.log" & PIDS+=($!)
      wait_port "$np" 10 || { log "nats-server did not listen"; return 1; }
      p=$(free_port)
      vcg_conf "$out/$t-a.conf" "$p" 1 "{ plugin = \"nats\"; servers = [\"nats://127.0.0.1:$np\"];$batch }"
      taskset -c 0 "$VCG" -c "$out/$t-a.conf" 2>>"$out/$t-a.log" & SPID=$!
      PIDS+=("$SPID")
      wait_port "$p" 10 || { log "$t (a) did not listen"; return 1; }
      p2=$(free_port)
      vcg_conf "$out/$t-b.conf" "$p2" 1 "{ plugin = \"nats\"; servers = [\"nats://127.0.0.1:$np\"];$batch }"
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
  local cpu=(--server-cpu 0)
  # vcgate-w2 is not pinned; vcgate-nats has three processes on CPU 0.
  case "$t" in vcgate-w2|vcgate-nats*) cpu=() ;; esac
  local cmd=(taskset -c 1 "$LG" "${URLS[@]}" --quiet --max-seconds "$maxs" ${SPID:+--server-pid "$SPID"} "${cpu[@]}" "$@")
  echo "$t $c: ${cmd[*]}" >> "$out/commands.txt"
  timeout $((maxs + 30)) "${cmd[@]}" 2>>"$out/loadgen.err" | while IFS= read -r line; do
    printf '%s\t%s\t%s\t%s\n' "$t" "$rep" "$c" "$line"
  done >> "$results"
}

final_field() { # target rep case field -> that field of the final saturate line (0 if none)
  awk -F'\t' -v t="$1" -v r="$2" -v c="$3" '$1==t && $2==r && $3==c && $4 ~ /"final":true/ {print $4}' "$results" |
    python3 -c 'import sys,json; l=[json.loads(x) for x in sys.stdin]; print(l[-1].get(sys.argv[1], 0) if l else 0)' "$4"
}

sat_meeting() { run_case "$1" "$2" sat-meeting 150 --scenario saturate --rate "$(start_meeting "$1")" --step-secs $STEP "${SEARCH[@]}"; }
sat_fanout() {
  run_case "$1" "$2" sat-fanout 150 --scenario saturate --rooms 1 --participants 200 --senders 1 \
    --rate "$(start_fanout "$1")" --step-secs $STEP "${SEARCH[@]}"
}
sat_call() { # target rep [extra loadgen args]: the most 5-person call-shape rooms
  local t=$1 rep=$2
  shift 2
  run_case "$t" "$rep" sat-call 200 --scenario saturate --shape call --active "$(start_call "$t")" \
    --step-secs $CALL_STEP "${SEARCH[@]}" "$@"
}

run_target() { # target rep
  local t=$1 rep=$2 half
  start_target "$t" || { stop_all; return; }
  log "rep $rep: $t (${URLS[*]})"
  case "$t" in
    vcgate|node|bare)
      # Idle memory first, on a fresh process: a search's thousands of busy
      # connections leave a heap that would absorb the idle ones.
      run_case "$t" "$rep" connections 90 --scenario connections --connections $CONNS --duration $HOLD
      if [ "$t" = vcgate ] || { [ "$t" = node ] && [ "$quick" = 0 ]; }; then
        run_case "$t" "$rep" meeting 60 --scenario meeting --duration "$MEET_DUR" --warmup 1
      fi
      sat_meeting "$t" "$rep"
      if [ "$quick" = 0 ] && [ "$t" != bare ]; then
        half=$(final_field "$t" "$rep" sat-meeting best_rate)
        if python3 -c "import sys; sys.exit(0 if float('$half') > 0 else 1)"; then
          half=$(python3 -c "print(round(float('$half')/2, 1))")
          run_case "$t" "$rep" half-rate 60 --scenario meeting --rate "$half" --duration "$MEET_DUR" --warmup 1
        fi
      fi
      sat_fanout "$t" "$rep"
      if [ "$t" != node ] || [ "$quick" = 0 ]; then sat_call "$t" "$rep"; fi ;;
    vcgate-w2)
      sat_meeting "$t" "$rep"
      sat_fanout "$t" "$rep" ;;
    vcgate-wt)
      [ "$quick" = 1 ] || run_case "$t" "$rep" meeting 60 --scenario meeting --duration "$MEET_DUR" --warmup 1
      sat_meeting "$t" "$rep"
      [ "$quick" = 1 ] || sat_fanout "$t" "$rep"
      sat_call "$t" "$rep" ;;
    vcgate-nats*)
      [ "$quick" = 1 ] || run_case "$t" "$rep" meeting 60 --scenario meeting --duration "$MEET_DUR" --warmup 1
      sat_meeting "$t" "$rep"
      [ "$quick" = 1 ] || sat_fanout "$t" "$rep" ;;
  esac
  stop_all
}

skip_missing() { # target: 0 when it can run here
  case "$1" in
    node) [ "$have_node" = 1 ] || { log "skip node: node or the ws package missing"; return 1; } ;;
    vcgate-nats*) [ "$have_nats" = 1 ] || { log "skip $1: nats.so or nats-server missing"; return 1; } ;;
    vcgate-wt) [ "$have_wt" = 1 ] || { log "skip vcgate-wt: webtransport.so or loadgen https:// support missing"; return 1; } ;;
    bare) [ -x "$BARE" ] || { log "skip bare: $BARE not built"; return 1; } ;;
  esac
  return 0
}

# ---- overload mode -----------------------------------------------------------
if [ "$overload" = 1 ]; then
  cg_setup "$quota" || { echo "run.sh: no writable cgroup cpu controller (v2 cpu.max or v1 cpu.cfs_quota_us); run as root" >&2; exit 1; }
  started=$(date +%s)
  log "output in $out; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  phases="3:1,10:$omult,5:0.5"
  for t in $targets; do
    case "$t" in vcgate|bare) ;; *) log "skip $t: --overload runs vcgate and bare"; continue ;; esac
    skip_missing "$t" || continue
    start_target "$t" || { stop_all; continue; }
    cg_add "$SPID" || { log "could not move $t ($SPID) into $CG"; stop_all; continue; }
    log "$t held to $quota% of CPU 0: sustained call-shape rooms"
    run_case "$t" 1 sat-call-quota 200 --scenario saturate --shape call --active 4 --step-secs 2 \
      --grace 0.5 --step-factor 2 --refine 3
    rooms=$(final_field "$t" 1 sat-call-quota best_rooms)
    if [ "${rooms:-0}" = 0 ]; then log "$t: no sustained room count under the quota"; stop_all; continue; fi
    for enc in clear encrypted; do
      log "$t: overload $phases x $rooms rooms ($enc)"
      run_case "$t" 1 "overload-$enc" 120 --scenario overload --shape call --active "$rooms" \
        --phases "$phases" --window-ms 250 --grace 1 --drain-max 30 $([ $enc = encrypted ] && echo --encrypted)
    done
    stop_all
  done
  elapsed=$(( $(date +%s) - started ))
  log "done in ${elapsed}s; load after: $(cut -d' ' -f1-3 /proc/loadavg)"
  python3 - "$results" "$quota" "$omult" "$elapsed" "$out" <<'PY'
import json, sys
res, quota, mult, elapsed, outdir = sys.argv[1:6]
rows = {}
for line in open(res):
    t, rep, case, js = line.rstrip("\n").split("\t", 3)
    try:
        rows.setdefault((t, case), []).append(json.loads(js))
    except ValueError:
        pass
def f(v, n=1):
    return "–" if v is None or v < 0 else ("%.*f" % (n, v))
print("Overload: server held to %s%% of CPU 0 (cgroup CPU quota), loadgen on CPU 1; %s s; raw JSON in %s/results.tsv"
      % (quota, elapsed, outdir))
order = {"sat-call-quota": 0, "overload-clear": 1, "overload-encrypted": 2}
for (t, case), ds in sorted(rows.items(), key=lambda kv: (kv[0][0] != "vcgate", kv[0][0], order.get(kv[0][1], 9))):
    d = ds[-1]
    if case == "sat-call-quota" and d.get("final"):
        print("\n%s: sustained under the quota: %s rooms of 5 (%s delivered msgs/s, p99 %s ms, stop: %s)"
              % (t, d.get("best_rooms"), "{:,.0f}".format(d.get("best_delivered_msgs_per_s", 0)),
                 f(d.get("best_p99_ms")), d.get("stop_reason")))
    if not case.startswith("overload"):
        continue
    print("\n%s, %s payloads (%s):" % (t, case.split("-", 1)[1], "the relay sees media_type" if "clear" in case
                                       else "opaque: the relay cannot see media_type"))
    print("  %-10s %6s %9s %9s %9s %9s %9s | delivered: %6s %6s %6s %6s %6s" %
          ("phase", "rooms", "p50 ms", "p99 ms", "audio99", "video99", "recov ms",
           "audio", "video", "vkey", "ctrl", "keyx"))
    for p in d["phases"]:
        c = p.get("classes", {})
        def frac(k):
            return "%.4f" % c[k]["delivered_fraction"] if k in c else "–"
        def p99(k):
            return f(c[k]["p99"]) if k in c else "–"
        print("  %-10s %6.0f %9s %9s %9s %9s %9s | %17s %6s %6s %6s %6s" %
              ("%gs x%g" % (p["secs"], p["mult"]), p["rooms_active"], f(p["latency_ms"]["p50"]),
               f(p["latency_ms"]["p99"]), p99("audio"), p99("video"), f(p["recovery_ms"], 0),
               frac("audio"), frac("video"), frac("video_key"), frac("control"), frac("key_exchange")))
    print("  congestion notices: %d; last delivery %s ms after sending stopped; lost %d of %d (all phases); %s" %
          (d["congestion"], f(d["drain_ms"], 1), d["lost"], d["expected"],
           "p99 under 50 ms again %s ms into the step-down" % f(d["recovery_ms"], 0) if d["recovery_ms"] >= 0
           else "p99 not back under 50 ms within the step-down"))
    print("  p99 per 250 ms window (send time), ms: " +
          " ".join(f(w["p99"], 0) for w in d["windows"] if w["phase"] >= 0))
PY
  exit 0
fi

# ---- the benchmark -----------------------------------------------------------
started=$(date +%s)
log "output in $out; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for rep in $(seq "$repeats"); do
  for t in $targets; do
    skip_missing "$t" || continue
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

# ---- ratios, then the table -------------------------------------------------
cmdline="contrib/bench/run.sh$([ "$quick" = 1 ] && echo ' --quick') --repeats $repeats --targets \"$targets\"$([ "$soak" -gt 0 ] 2>/dev/null && echo " --soak $soak")"
python3 - "$results" "$top/BENCHMARKS.md" "$write" "$cmdline" "$elapsed" "$CONNS" "$out" <<'PY'
import json, os, re, statistics, subprocess, sys, time
res, md, write, cmdline, elapsed, conns, outdir = sys.argv[1:8]
rows = {}
shared = {}  # target -> [search steps, steps where another process used CPU 0]
for line in open(res):
    t, rep, case, js = line.rstrip("\n").split("\t", 3)
    try:
        d = json.loads(js)
    except ValueError:
        continue
    if case.startswith("sat-") and not d.get("final"):
        busy, irq, srv = d.get("cpu_busy_pct", []), d.get("cpu_irq_pct", []), d.get("server_cpu_pct")
        if t in ("vcgate", "bare", "node", "vcgate-wt") and busy and irq and srv is not None:
            # CPU 0's busy time that is neither the server's nor interrupts.
            s = shared.setdefault(t, [0, 0])
            s[0] += 1
            s[1] += busy[0] - irq[0] - srv >= 25
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

def best(k):
    return lambda d: d.get(k)

def cls_p99(c):
    return lambda d: d.get("best_p99_ms_by_class", {}).get(c)

def lgcpu(d):
    return d.get("best_loadgen_cpu_pct")

def fmt(v):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    if isinstance(v, float) and abs(v) < 100:
        return "%.3f" % v if abs(v) < 10 else "%.1f" % v
    return "{:,.0f}".format(v)

def ratio(a, b):
    return "%.2f" % (a / b) if a is not None and b else "–"

# ---- ratios first: what the run says in one screen.
sat = {"meeting 20x5 sustained msgs/s": ("sat-meeting", best("best_delivered_msgs_per_s")),
       "fanout 1x200 sustained msgs/s": ("sat-fanout", best("best_delivered_msgs_per_s")),
       "call shape: most 5-person rooms": ("sat-call", best("best_rooms"))}
print("Ratios (same run, same loadgen, server on CPU 0, loadgen on CPU 1; medians):")
for name, (case, f) in sat.items():
    v, b, n = med("vcgate", case, f), med("bare", case, f), med("node", case, f)
    bound = [t for t in ("vcgate", "bare") if (med(t, case, lgcpu) or 0) >= 90]
    print("  %-34s vcgate %s / bare %s = %s   vcgate / Node %s = %s%s" %
          (name + ":", fmt(v), fmt(b), ratio(v, b), fmt(n), ratio(v, n),
           ("   (loadgen >= 90%% of CPU 1 at the best step of %s: loadgen-bound)" % ", ".join(bound)) if bound else ""))
for name, case, f in (("WebTransport / WebSocket, meeting", "sat-meeting", best("best_delivered_msgs_per_s")),
                      ("WebTransport / WebSocket, call rooms", "sat-call", best("best_rooms"))):
    print("  %-34s %s / %s = %s" % (name + ":", fmt(med("vcgate-wt", case, f)), fmt(med("vcgate", case, f)),
                                   ratio(med("vcgate-wt", case, f), med("vcgate", case, f))))
f = best("best_delivered_msgs_per_s")
print("  %-34s %s / %s = %s" % ("2 gates + NATS (one core) / one:", fmt(med("vcgate-nats", "sat-meeting", f)),
                               fmt(med("vcgate", "sat-meeting", f)),
                               ratio(med("vcgate-nats", "sat-meeting", f), med("vcgate", "sat-meeting", f))))
if med("vcgate-natsb", "sat-meeting", f) is not None:
    print("  %-34s %s / %s = %s" % ("  the same with batch = true:", fmt(med("vcgate-natsb", "sat-meeting", f)),
                                   fmt(med("vcgate", "sat-meeting", f)),
                                   ratio(med("vcgate-natsb", "sat-meeting", f), med("vcgate", "sat-meeting", f))))
f = best("rss_per_conn_bytes")
print("  %-34s vcgate %s / bare %s / Node %s" % ("idle connection RSS (bytes):", fmt(med("vcgate", "connections", f)),
                                                fmt(med("bare", "connections", f)), fmt(med("node", "connections", f))))
noisy = ["%s %d of %d" % (t, n, m) for t, (m, n) in sorted(shared.items()) if n]
if noisy:
    print("  search steps where other processes used >= 25% of CPU 0 (busy minus irq minus the server;"
          " those figures are low): " + ", ".join(noisy))
print()

metrics = [
    ("meeting 20x5, 1000 B, 30 pkt/s per sender: p50 latency (ms)", "meeting", lat("p50"), "lower"),
    ("meeting 20x5, 1000 B, 30 pkt/s: p99 latency (ms)", "meeting", lat("p99"), "lower"),
    ("meeting 20x5, 30 pkt/s: lost + duplicated + misrouted", "meeting",
     lambda d: d["lost"] + d["duplicated"] + d["misrouted"], "lower"),
    ("meeting 20x5, 1000 B: sustained delivered msgs/s (p99 <= 50 ms, zero loss)", "sat-meeting",
     best("best_delivered_msgs_per_s"), "higher"),
    ("meeting 20x5 at half the sustained rate: p50 latency (ms)", "half-rate", lat("p50"), "lower"),
    ("meeting 20x5 at half the sustained rate: p99 latency (ms)", "half-rate", lat("p99"), "lower"),
    ("fanout 1x200, 1000 B: sustained delivered msgs/s (p99 <= 50 ms, zero loss)", "sat-fanout",
     best("best_delivered_msgs_per_s"), "higher"),
    ("call shape: most 5-person rooms (audio and video p99 <= 50 ms, zero loss)", "sat-call",
     best("best_rooms"), "higher"),
    ("call shape: delivered msgs/s at that room count", "sat-call", best("best_delivered_msgs_per_s"), "higher"),
    ("call shape at that room count: audio / video p99 (ms)", "sat-call",
     lambda d: "%.1f / %.1f" % (cls_p99("audio")(d), cls_p99("video")(d)) if d.get("best_p99_ms_by_class") else None,
     "info"),
    ("meeting 20x5: server process CPU % at the sustained step", "sat-meeting",
     best("best_server_cpu_pct"), "info"),
    ("meeting 20x5: CPU 0 / CPU 1 busy % at the sustained step (server / loadgen)", "sat-meeting",
     lambda d: "%.0f / %.0f" % tuple(d["best_cpu_busy_pct"][:2]) if len(d.get("best_cpu_busy_pct", [])) >= 2 else None, "info"),
    ("connections: %s idle, server RSS per connection (bytes)" % conns, "connections",
     best("rss_per_conn_bytes"), "lower"),
    ("connections: %s idle, held at the end" % conns, "connections", best("held"), "higher"),
]
targets = ["vcgate", "bare", "node", "vcgate-w2", "vcgate-nats", "vcgate-natsb", "vcgate-wt"]

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
out.append("| scenario | vcgate | bare relay | vcgate/bare | Node `ws` | vcgate/Node | vcgate workers=2 (unpinned) | vcgate ×2 + NATS (CPU 0) | the same, NATS batch | vcgate WebTransport |")
out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for name, case, f, better in metrics:
    v = {t: med(t, case, f) for t in targets}
    rb = rn = "–"
    if better != "info":
        suffix = " (lower is better)" if better == "lower" else ""
        if v["vcgate"] is not None and v["bare"]:
            rb = ratio(v["vcgate"], v["bare"]) + suffix
        if v["vcgate"] is not None and v["node"]:
            rn = ratio(v["vcgate"], v["node"]) + suffix
    out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        name, fmt(v["vcgate"]), fmt(v["bare"]), rb, fmt(v["node"]), rn, fmt(v["vcgate-w2"]),
        fmt(v["vcgate-nats"]), fmt(v["vcgate-natsb"]), fmt(v["vcgate-wt"])))
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
