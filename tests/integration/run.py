#!/usr/bin/env python3
"""Run vcgate's integration tests.

Discovers tests/integration/test_*.py and runs every top-level `test_*`
function in definition order (coroutines through asyncio.run), each under a
timeout (default 60 s, or the function's `timeout` attribute set by
harness.timeout()).  Prints `ok - file::name (secs)`, `not ok - file::name:
reason` or `skip - file::name: reason` per test and ends with
`N passed, N failed, N skipped`.  Exit status 1 when any test failed.

  run.py [-k SUBSTRING] [-x] [-v] [FILE...]
  env VCGATE_TEST_FILTER=SUBSTRING  (same as -k)
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# Debian's python3-websockets lives in the system interpreter; a python3
# earlier on PATH (pyenv, a venv) may not see it.  Re-run under /usr/bin/python3.
try:
    import websockets  # noqa: F401
except ImportError:
    if os.path.exists("/usr/bin/python3") and os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3") \
            and not os.environ.get("VCGATE_REEXEC"):
        os.environ["VCGATE_REEXEC"] = "1"
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    sys.stderr.write("run.py: python3-websockets is not installed (apt-get install python3-websockets)\n")
    print("0 passed, 1 failed, 0 skipped")
    sys.exit(1)

import argparse
import asyncio
import glob
import importlib.util
import inspect
import signal
import time
import traceback

sys.path.insert(0, HERE)
import harness  # noqa: E402


class _Timeout(BaseException):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def load(path):
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_one(fn, limit):
    if inspect.iscoroutinefunction(fn):
        async def wrapped():
            return await asyncio.wait_for(fn(), limit)
        asyncio.run(wrapped())
    else:
        fn()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", dest="filter", default=os.environ.get("VCGATE_TEST_FILTER", ""))
    ap.add_argument("-x", dest="exitfirst", action="store_true")
    ap.add_argument("-v", dest="verbose", action="store_true",
                    help="print the full traceback of failures")
    ap.add_argument("files", nargs="*")
    a = ap.parse_args()

    files = a.files or sorted(glob.glob(os.path.join(HERE, "test_*.py")))
    signal.signal(signal.SIGALRM, _alarm)
    npass = nfail = nskip = 0
    for path in files:
        rel = os.path.basename(path)
        try:
            mod = load(path)
        except Exception as e:
            print("not ok - %s: cannot load: %s" % (rel, e), flush=True)
            nfail += 1
            continue
        tests = [(n, f) for n, f in vars(mod).items()
                 if n.startswith("test_") and callable(f)
                 and getattr(f, "__module__", None) == mod.__name__]
        for name, fn in tests:
            tid = "%s::%s" % (rel, name)
            if a.filter and a.filter not in tid:
                continue
            limit = getattr(fn, "timeout", 60)
            t0 = time.monotonic()
            status, reason = "ok", ""
            # The alarm is a backstop for synchronous tests (and for an event
            # loop stuck outside await); coroutines also get wait_for.
            signal.setitimer(signal.ITIMER_REAL,
                             limit + 5 if inspect.iscoroutinefunction(fn) else limit)
            try:
                run_one(fn, limit)
            except harness.Skip as e:
                status, reason = "skip", str(e)
            except _Timeout:
                status, reason = "fail", "timed out after %ss" % limit
            except asyncio.TimeoutError:
                status = "fail"
                if time.monotonic() - t0 >= limit - 0.5:
                    reason = "timed out after %ss" % limit
                else:
                    # An inner bounded wait expired: name where.
                    tb = traceback.extract_tb(sys.exc_info()[2])
                    here = [f for f in tb if os.path.basename(f.filename).startswith("test_")]
                    where = here[-1] if here else tb[-1]
                    reason = "a wait timed out at %s:%d (%s)" % (
                        os.path.basename(where.filename), where.lineno, where.line)
                    if a.verbose:
                        reason += "\n" + traceback.format_exc()
            except BaseException as e:
                if isinstance(e, KeyboardInterrupt):
                    raise
                status = "fail"
                reason = "%s: %s" % (type(e).__name__, e) if not isinstance(e, AssertionError) else (str(e) or "assertion failed")
                if a.verbose or not isinstance(e, AssertionError):
                    reason += "\n" + traceback.format_exc()
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            # Stop whatever the test left running; a sanitizer report or a
            # crash found at that point fails the test.
            problems = harness.stop_all_servers()
            if problems and status != "fail":
                status = "fail"
                reason = "; ".join(problems)
            elif problems:
                reason += "\nalso at stop: " + "; ".join(problems)
            secs = time.monotonic() - t0
            if status == "ok":
                npass += 1
                print("ok - %s (%.2fs)" % (tid, secs), flush=True)
                harness.cleanup_tmp()
            elif status == "skip":
                nskip += 1
                print("skip - %s: %s" % (tid, reason), flush=True)
                harness.cleanup_tmp()
            else:
                nfail += 1
                lines = reason.rstrip().splitlines() or ["failed"]
                print("not ok - %s: %s" % (tid, lines[0]), flush=True)
                for l in lines[1:]:
                    print("#   " + l, flush=True)
                harness._tmpdirs.clear()  # keep logs of failed tests
                if a.exitfirst:
                    break
        if a.exitfirst and nfail:
            break
    print("%d passed, %d failed, %d skipped" % (npass, nfail, nskip), flush=True)
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
