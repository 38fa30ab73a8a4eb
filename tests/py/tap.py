"""tap.py — tiny TAP helpers for the Python-driven tests (tests/run.sh sums them)."""
import os
import subprocess
import sys
import traceback

ROOT = os.environ.get("SD_ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD = os.environ.get("SD_BUILD", "build")
BIN = os.environ.get("SD_BIN", os.path.join(ROOT, BUILD, "bin"))
UTIL = os.path.join(ROOT, BUILD, "tests", "util")

_n = 0
_failed = 0


def check(name, fn):
    """Run fn(); an exception or a false result is a failure."""
    global _n, _failed
    _n += 1
    try:
        r = fn()
        ok = r is None or bool(r)
        msg = ""
    except Exception:  # noqa: BLE001 - report everything as a test failure
        ok = False
        msg = traceback.format_exc()
    if ok:
        print(f"ok {_n} - {name}")
    else:
        _failed += 1
        print(f"not ok {_n} - {name}")
        for line in msg.splitlines():
            print("# " + line)
    sys.stdout.flush()


def done():
    print(f"1..{_n}")
    sys.exit(1 if _failed else 0)


def run(args, check_rc=True, **kw):
    """Run a command, return CompletedProcess (text)."""
    p = subprocess.run(args, capture_output=True, text=True, **kw)
    if check_rc and p.returncode != 0:
        raise AssertionError(f"{args} exited {p.returncode}: {p.stderr.strip()}")
    return p
