#!/usr/bin/env bash
# tests/run.sh — run every test and print "N passed, N failed".
#
# Unit test programs ($BUILD/tests/test_*) and CLI/Python tests (tests/cli/*.sh,
# tests/py/test_*.py) all speak TAP ("ok N - name" / "not ok N - name").
# A program that exits non-zero without reporting a failure (a crash, a
# sanitizer report) counts as one failed test.
#
#   BUILD=build tests/run.sh [PATTERN]      # PATTERN filters file names
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PATTERN=${1:-}
export SD_BUILD=$BUILD SD_BIN=$PWD/$BUILD/bin SD_ROOT=$PWD
export SD_PY=${SD_PY:-$PWD/.venv-test/bin/python}
export PYTHONDONTWRITEBYTECODE=1
passed=0 failed=0
failed_names=()
logdir=$BUILD/test-logs
mkdir -p "$logdir"

run_one() { # name, command...
    local name=$1; shift
    local log=$logdir/$(basename "$name").log
    local t0=$SECONDS
    "$@" >"$log" 2>&1
    local rc=$?
    local ok nok
    ok=$(grep -cE '^ok ' "$log")
    nok=$(grep -cE '^not ok ' "$log")
    if [ "$rc" -ne 0 ] && [ "$nok" -eq 0 ]; then nok=1; echo "not ok - $name exited with status $rc" >>"$log"; fi
    passed=$((passed + ok)); failed=$((failed + nok))
    if [ "$nok" -gt 0 ]; then
        failed_names+=("$name")
        printf 'FAIL %-40s %4d ok %3d failed  (%ds)\n' "$name" "$ok" "$nok" $((SECONDS - t0))
        grep -E '^(not ok|#)' "$log" | head -40 | sed 's/^/    /'
    else
        printf 'PASS %-40s %4d ok  (%ds)\n' "$name" "$ok" $((SECONDS - t0))
    fi
}

for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    case "$t" in *"$PATTERN"*) ;; *) continue ;; esac
    run_one "$(basename "$t")" "$t"
done
for t in tests/cli/test_*.sh; do
    [ -f "$t" ] || continue
    case "$t" in *"$PATTERN"*) ;; *) continue ;; esac
    run_one "$t" bash "$t"
done
for t in tests/py/test_*.py; do
    [ -f "$t" ] || continue
    case "$t" in *"$PATTERN"*) ;; *) continue ;; esac
    run_one "$t" "$SD_PY" "$t"
done

if [ "${#failed_names[@]}" -gt 0 ]; then echo "failed: ${failed_names[*]} (logs in $logdir)"; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
