# TAP helpers for the shell tests (sourced): each check prints "ok N - what"
# or "not ok N - what" with the command's output indented as a comment;
# tests/run.sh counts those lines as it counts cmocka's.
tap_n=0
tap_failed=0
tap_ok() { tap_n=$((tap_n + 1)); echo "ok $tap_n - $1"; }
tap_not_ok() {
    tap_n=$((tap_n + 1)); tap_failed=$((tap_failed + 1))
    echo "not ok $tap_n - $1"
    [ -n "${2:-}" ] && [ -f "$2" ] && sed 's/^/#   /' "$2" | tail -40
    return 0
}
# tap_check WHAT LOG CMD...: CMD must succeed; its output goes to LOG
tap_check() {
    what=$1; log=$2; shift 2
    if "$@" >"$log" 2>&1; then tap_ok "$what"; else tap_not_ok "$what (exit $?)" "$log"; fi
}
# tap_grep WHAT FILE PATTERN: FILE holds a line matching the fixed string PATTERN
tap_grep() {
    if grep -qF -- "$3" "$2"; then tap_ok "$1"; else tap_not_ok "$1: no '$3' in" "$2"; fi
}
# tap_no_grep WHAT FILE PATTERN: no line of FILE holds the fixed string PATTERN
tap_no_grep() {
    if grep -qF -- "$3" "$2"; then tap_not_ok "$1: '$3' in" "$2"; else tap_ok "$1"; fi
}
# tap_if WHAT LOG CMD...: CMD (a test, quiet) must succeed; LOG is shown if not
tap_if() {
    what=$1; log=$2; shift 2
    if "$@" > /dev/null 2>&1; then tap_ok "$what"; else tap_not_ok "$what" "$log"; fi
}
# tap_refused WHAT PATTERN CMD...: CMD must fail (non-zero) saying the fixed string PATTERN
tap_refused() {
    what=$1 pattern=$2; shift 2
    "$@" > refused.log 2>&1
    rc=$?
    if [ $rc != 0 ] && grep -qF -- "$pattern" refused.log; then tap_ok "refused: $what"
    else echo "exit $rc" >> refused.log; tap_not_ok "refused: $what: want '$pattern'" refused.log; fi
}
tap_end() { echo "1..$tap_n"; [ "$tap_failed" -eq 0 ]; }
# tap_release_only WHY: a test that runs once, on the release build ($here
# is the test's build directory)
tap_release_only() {
    if [ "$(basename "$(dirname "$here")")" != release ]; then echo "1..0 # SKIP $1"; exit 0; fi
}
# tap_tmpdir NAME: $tmp, a fresh temporary directory removed at exit
tap_tmpdir() {
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/vlp-$1.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT INT TERM
}
# metrics_losses FILE: "step loss" of each training step of a metrics.jsonl
metrics_losses() { sed -n 's/^{"step":\([0-9]*\),"loss":\([^,]*\),.*/\1 \2/p' "$1"; }
