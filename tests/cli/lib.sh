# tests/cli/lib.sh — TAP helpers for the CLI tests (sourced).
#   ok CONDITION-COMMAND... ; expect_error "name" "substring" CMD... ; finish
set -u
BIN=${SD_BIN:?SD_BIN not set (run through tests/run.sh)}
ROOT=${SD_ROOT:-$PWD}
PY=${SD_PY:-python3}
TAP_N=0 TAP_FAILED=0
TMP=$(mktemp -d "${TMPDIR:-/tmp}/sdcli.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

pass() { TAP_N=$((TAP_N + 1)); echo "ok $TAP_N - $1"; }
fail() { TAP_N=$((TAP_N + 1)); TAP_FAILED=$((TAP_FAILED + 1)); echo "not ok $TAP_N - $1"; shift; for l in "$@"; do echo "# $l"; done; }

# check NAME CMD... : passes if CMD exits 0
check() { local name=$1; shift; local out; if out=$("$@" 2>&1); then pass "$name"; else fail "$name" "command failed: $*" "$(echo "$out" | tail -5)"; fi; }

# expect_error NAME SUBSTRING CMD... : CMD must exit 1 (not crash), print exactly one
# stderr line "TOOL: error: ..." containing SUBSTRING
expect_error() {
    local name=$1 sub=$2; shift 2
    local err rc
    err=$("$@" 2>&1 >/dev/null); rc=$?
    local lines; lines=$(printf '%s' "$err" | grep -c '')
    if [ "$rc" -ne 1 ]; then fail "$name" "exit status $rc (want 1): $*" "$err"; return; fi
    if [ "$lines" -ne 1 ]; then fail "$name" "want one stderr line, got $lines" "$err"; return; fi
    case "$err" in *": error: "*"$sub"*) pass "$name" ;; *) fail "$name" "stderr lacks '$sub'" "$err" ;; esac
}

finish() { echo "1..$TAP_N"; [ "$TAP_FAILED" -eq 0 ]; }
