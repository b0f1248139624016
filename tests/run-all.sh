#!/bin/bash
# Run every vcgate test: build, C unit tests (make check), integration tests
# against the build, then the same under AddressSanitizer+UBSan in a VPATH
# build (_build-asan).  Ends with one line `N passed, N failed, N skipped`
# summing every suite; exits non-zero if anything failed.  Last, each
# libFuzzer harness (tests/fuzz) runs for FUZZ_SECONDS, one test each,
# when clang can build them (a `skip` line says so when it cannot).
#
#   tests/run-all.sh            everything
#   SKIP_ASAN=1 tests/run-all.sh   skip the sanitizer build
#   SKIP_FUZZ=1 tests/run-all.sh   skip the fuzz harnesses
#   FUZZ_SECONDS=15 FUZZ_JOBS=2 tests/run-all.sh   seconds per fuzz harness,
#                               harnesses at a time
#   SKIP_DEPS=1 tests/run-all.sh   do not apt-get install missing packages
#   JOBS=4 tests/run-all.sh     make -j
#
# Run from anywhere; it works in the source tree it lives in.
set -uo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$TOP"
JOBS=${JOBS:-2}
LOGDIR=${LOGDIR:-$TOP/_build-logs}
mkdir -p "$LOGDIR"
export AM_COLOR_TESTS=no
# .ci/run installs the dependencies of these plugins: their absence is a
# failure, not a skip.
export VCGATE_REQUIRE_PLUGINS=${VCGATE_REQUIRE_PLUGINS:-inproc,websocket,webtransport,nats}
# Only the sanitizer build reads these.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# The leak checker's suppressions: one leak inside libconfig, by name.
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$TOP/tests/lsan.supp:print_suppressions=0}
FUZZ_SECONDS=${FUZZ_SECONDS:-15}
FUZZ_JOBS=${FUZZ_JOBS:-2}  # harnesses at a time: nothing else of the suite runs then

# Debian's python3-websockets is in the system interpreter; do not pick up a
# python3 from pyenv or a venv that lacks it.
PY=${PYTHON:-/usr/bin/python3}
[ -x "$PY" ] || PY=python3

PASS=0 FAIL=0 SKIP=0
SUITES=()

note() { printf '\n=== %s\n' "$*"; }

add() {  # add SUITE PASS FAIL SKIP
  PASS=$((PASS + $2)); FAIL=$((FAIL + $3)); SKIP=$((SKIP + $4))
  SUITES+=("$1: $2 passed, $3 failed, $4 skipped")
}

# Run a build step; on failure count it as one failed test and show the tail.
step() {  # step NAME LOGFILE CMD...
  local name=$1 log=$2; shift 2
  if "$@" >"$log" 2>&1; then
    return 0
  fi
  echo "not ok - $name (see $log)"
  tail -n 40 "$log" | sed 's/^/#   /'
  add "$name" 0 1 0
  return 1
}

# make check in build dir $1; counts from automake's `# PASS:` summaries.
unit_tests() {  # unit_tests SUITE BUILDDIR
  local suite=$1 dir=$2 log="$LOGDIR/$1-make-check.log" rc=0
  note "$suite: make check"
  make -C "$dir" -j"$JOBS" check >"$log" 2>&1 || rc=$?
  # Echo per-test result lines (PASS: / FAIL: ...) so the CI log shows them.
  grep -E '^(PASS|FAIL|SKIP|XFAIL|XPASS|ERROR): ' "$log" || true
  local p f s
  read -r p f s < <(awk '
    /^# (PASS|XFAIL):/ { p += $3 }
    /^# (FAIL|XPASS|ERROR):/ { f += $3 }
    /^# SKIP:/ { s += $3 }
    END { printf "%d %d %d\n", p, f, s }' "$log")
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    # make check failed outside the test harness (a build error).
    echo "not ok - $suite: make check failed (see $log)"
    tail -n 40 "$log" | sed 's/^/#   /'
    f=1
  fi
  if [ "$f" -gt 0 ]; then
    # Show the logs of the failed tests.
    find "$dir" -name '*.log' ! -name 'test-suite.log' ! -name 'config.log' -newer "$dir/config.status" 2>/dev/null |
      while read -r l; do
        if grep -qE '^(not ok|FAIL)' "$l" 2>/dev/null || grep -q '^:test-result: FAIL' "${l%.log}.trs" 2>/dev/null; then
          echo "--- $l"; tail -n 30 "$l"
        fi
      done
  fi
  echo "$suite: $p passed, $f failed, $s skipped"
  add "$suite" "$p" "$f" "$s"
}

# Integration tests against build dir $1.
integration_tests() {  # integration_tests SUITE BUILDDIR [ENV...]
  local suite=$1 dir=$2; shift 2
  local log="$LOGDIR/$suite.log" rc=0
  note "$suite: integration tests against $dir"
  env VCGATE_BUILD_DIR="$dir" "$@" "$PY" "$TOP/tests/integration/run.py" 2>&1 | tee "$log" || rc=$?
  local line p f s
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$log" | tail -n 1)
  if [ -z "$line" ]; then
    echo "not ok - $suite: the runner printed no summary (exit $rc)"
    add "$suite" 0 1 0
    return
  fi
  read -r p _ f _ s _ <<<"${line//,/}"
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  add "$suite" "$p" "$f" "$s"
}

# The libFuzzer harnesses in build dir $1 (tests/fuzz/Makefile.am), each
# one test: ok unless it crashed, leaked or found a disagreement.
fuzz_tests() {  # fuzz_tests BUILDDIR
  local dir=$1 log="$LOGDIR/fuzz.log" names p f
  names=$(make -s --no-print-directory -C "$dir/tests/fuzz" fuzz-list)
  local count
  count=$(wc -w <<<"$names")
  note "fuzz: $count libFuzzer harnesses, ${FUZZ_SECONDS} s each, $FUZZ_JOBS at a time"
  if ! make -s -C "$dir/tests/fuzz" fuzz-probe >"$LOGDIR/fuzz-probe.log" 2>&1; then
    echo "skip - fuzz: $(grep -m1 '^fuzz: ' "$LOGDIR/fuzz-probe.log" | cut -c7- || true)"
    add fuzz 0 0 "$count"
    return
  fi
  make -C "$dir/tests/fuzz" fuzz FUZZ_SECONDS="$FUZZ_SECONDS" FUZZ_JOBS="$FUZZ_JOBS" >"$log" 2>&1
  grep -E '^(not )?ok - fuzz_' "$log"
  p=$(grep -c '^ok - fuzz_' "$log")
  f=$(grep -c '^not ok - fuzz_' "$log")
  if [ $((p + f)) -ne "$count" ]; then
    echo "not ok - fuzz: $((p + f)) of $count harnesses reported (see $log)"
    tail -n 20 "$log" | sed 's/^/#   /'
    f=$((count - p))
  fi
  add fuzz "$p" "$f" 0
}

# ---------------------------------------------------------------- deps
# Build and test dependencies (Debian packages), only those missing.
if [ "${SKIP_DEPS:-0}" != 1 ]; then
  note "dependencies"
  bash contrib/install-deps.sh test || { echo "not ok - install-deps"; add install-deps 0 1 0; }
fi

# ---------------------------------------------------------------- npm
if [ -f tests/integration/package.json ]; then
  note "npm install (tests/integration)"
  if ! (cd tests/integration && npm install --no-audit --no-fund >"$LOGDIR/npm.log" 2>&1); then
    echo "warning: npm install failed (see $LOGDIR/npm.log)"
    tail -n 20 "$LOGDIR/npm.log"
  fi
fi

# ---------------------------------------------------------------- build
# The sanitizer build is a VPATH build in _build-asan, which automake only
# allows while the source tree itself is not configured; so it goes first,
# from a clean tree, and the ordinary in-tree build follows.
note "autoreconf"
if [ -f config.status ]; then
  echo "note: the source tree is configured in place; running make distclean first"
  make distclean >"$LOGDIR/distclean.log" 2>&1 || true
  rm -f config.status
fi
step "autoreconf" "$LOGDIR/autoreconf.log" autoreconf -fi || AUTORECONF_FAILED=1

if [ -z "${AUTORECONF_FAILED:-}" ] && [ "${SKIP_ASAN:-0}" != 1 ]; then
  note "sanitizer build (_build-asan)"
  rm -rf _build-asan
  mkdir -p _build-asan
  if step "asan-configure" "$LOGDIR/asan-configure.log" \
       bash -c "cd '$TOP/_build-asan' && ../configure --enable-sanitizers" &&
     step "asan-make" "$LOGDIR/asan-make.log" make -C _build-asan -j"$JOBS"; then
    unit_tests unit-asan "$TOP/_build-asan"
    integration_tests integration-asan "$TOP/_build-asan" VCGATE_SANITIZED=1
  fi
fi

if [ -z "${AUTORECONF_FAILED:-}" ]; then
  note "build"
  if step "configure" "$LOGDIR/configure.log" ./configure &&
     step "make" "$LOGDIR/make.log" make -j"$JOBS"; then
    tail -n 12 "$LOGDIR/configure.log"
    unit_tests unit "$TOP"
    integration_tests integration "$TOP"
    [ "${SKIP_FUZZ:-0}" = 1 ] || fuzz_tests "$TOP"
  fi
fi

# ---------------------------------------------------------------- summary
note "summary"
for s in "${SUITES[@]}"; do echo "  $s"; done
echo "$PASS passed, $FAIL failed, $SKIP skipped"
[ "$FAIL" -eq 0 ]
