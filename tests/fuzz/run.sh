#!/bin/bash
# Run libFuzzer harnesses (built by clang.mk) for a bounded time each and
# print one line per harness, then exit non-zero if any found something:
#   ok - fuzz_NAME: RUNS runs in SECS s (EXEC/s), cov: C ft: F, corpus N
#   not ok - fuzz_NAME: WHAT (input: ARTIFACT, log: LOG)
#
#   run.sh -t SECONDS [-j JOBS] -o OUTDIR -s SRCDIR NAME...
#
# OUTDIR holds bin/fuzz_NAME; each run grows OUTDIR/corpus/NAME (the seed
# corpus SRCDIR/corpus/NAME is read, never written), leaves crashing
# inputs in OUTDIR/artifacts/ and its output in OUTDIR/logs/NAME.log.
# Extra libFuzzer flags: FUZZ_FLAGS.  JOBS harnesses run at a time.
set -uo pipefail
SECS=60 JOBS=1 OUT= SRC=
while getopts t:j:o:s: o; do
  case $o in
    t) SECS=$OPTARG ;; j) JOBS=$OPTARG ;; o) OUT=$OPTARG ;; s) SRC=$OPTARG ;;
    *) echo "usage: $0 -t SECONDS [-j JOBS] -o OUTDIR -s SRCDIR NAME..." >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ -n "$OUT" ] && [ -n "$SRC" ] && [ $# -gt 0 ] || { echo "$0: -o, -s and names are required" >&2; exit 2; }
mkdir -p "$OUT/logs" "$OUT/artifacts"

# Longest input per harness: past each parser's own limit, so the limits
# are exercised, and no longer (longer inputs only slow the search).
max_len() {
  case $1 in
    http) echo 9000 ;;     # VCG__HTTP_MAX_HEAD is 8192
    lobby) echo 8192 ;;    # tokens up to VCG__LOBBY_TOKEN_MAX (4096)
    jwt) echo 5000 ;;      # VCG__JWT_MAX is 4096
    *) echo 4096 ;;
  esac
}

# fuzz_config checks for leaks once, when it exits, instead of after each
# input: libconfig's suppressed leak (tests/lsan.supp) follows ~5% of
# config texts and makes libFuzzer stop and scan the heap after each of
# those, which costs 98% of the time (224 vs 14,000 inputs/s).  A leak of
# ours still fails the run; the input is then looked for in the corpus.
exit_leak_check() { [ "$1" = config ]; }

# The one leak we accept (libconfig 1.5, see tests/lsan.supp) and nothing else.
export LSAN_OPTIONS="suppressions=$SRC/../lsan.supp:print_suppressions=0"
export ASAN_OPTIONS="detect_leaks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

run_one() {  # run_one NAME: writes OUT/logs/NAME.result
  local n=$1 bin="$OUT/bin/fuzz_$1" log="$OUT/logs/$1.log" res="$OUT/logs/$1.result"
  local dict=() flags=() rc=0
  [ -f "$SRC/$n.dict" ] && dict=(-dict="$SRC/$n.dict")
  exit_leak_check "$n" && flags=(-detect_leaks=0)
  mkdir -p "$OUT/corpus/$n"
  rm -f "$OUT/artifacts/$n-"*
  local t0=$SECONDS
  "$bin" -max_total_time="$SECS" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    -max_len="$(max_len "$n")" -artifact_prefix="$OUT/artifacts/$n-" "${dict[@]}" "${flags[@]}" ${FUZZ_FLAGS:-} \
    "$OUT/corpus/$n" "$SRC/corpus/$n" >"$log" 2>&1 || rc=$?
  local took=$((SECONDS - t0))
  if [ "$rc" -ne 0 ] && exit_leak_check "$n" && grep -q 'ERROR: LeakSanitizer' "$log"; then
    # Which input leaked: each corpus input once, checked one by one.
    "$bin" -runs=0 -detect_leaks=1 -artifact_prefix="$OUT/artifacts/$n-" \
      "$OUT/corpus/$n" "$SRC/corpus/$n" >"$log.pinpoint" 2>&1
  fi
  local runs done art
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  done=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1)
  art=$(ls "$OUT/artifacts/$n-"* 2>/dev/null | head -n 1)
  if [ "$rc" -eq 0 ] && [ -n "$done" ] && [ -z "$art" ]; then
    local cov ft corp
    cov=$(sed -E 's/.* cov: ([0-9]+).*/\1/' <<<"$done")
    ft=$(sed -E 's/.* ft: ([0-9]+).*/\1/' <<<"$done")
    corp=$(sed -E 's/.* corp: ([0-9]+)\/.*/\1/' <<<"$done")
    echo "ok - fuzz_$n: ${runs:-?} runs in $took s ($(( ${runs:-0} / (took > 0 ? took : 1) ))/s), cov: $cov ft: $ft, corpus $corp" >"$res"
  else
    local what
    what=$(grep -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|fuzz check failed|deadly signal' "$log" |
      sed -E 's/^==[0-9]+==//; s/^[[:space:]]+//' | cut -c1-160)
    echo "not ok - fuzz_$n: ${what:-exit $rc} (input: ${art:-none}, log: $log)" >"$res"
  fi
}

names=("$@")
running=0
for n in "${names[@]}"; do
  if [ ! -x "$OUT/bin/fuzz_$n" ]; then
    echo "not ok - fuzz_$n: $OUT/bin/fuzz_$n not built" >"$OUT/logs/$n.result"
    continue
  fi
  run_one "$n" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
done
wait
fail=0
for n in "${names[@]}"; do
  cat "$OUT/logs/$n.result"
  grep -q '^not ok' "$OUT/logs/$n.result" && fail=1
done
exit $fail
