#!/bin/sh
# Runs every test binary of the given build directories and ends with the
# line "N passed, N failed"; a passing test's "# summary: ..." lines are
# shown under it. A binary that crashes or exits non-zero without
# naming a failed test counts as one failure. Exit status: 0 iff none failed.
#   tests/run.sh build/release build/asan
set -u
[ $# -ge 1 ] || { echo "usage: tests/run.sh BUILD_DIR..." >&2; exit 2; }

export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1:halt_on_error=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export CMOCKA_MESSAGE_OUTPUT=TAP
# tests pick their thread count; keep the user's environment from changing kernels
unset OPENBLAS_CORETYPE

passed=0; failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for dir in "$@"; do
    for t in "$dir"/tests/test_*; do
        [ -x "$t" ] || continue
        "$t" >"$log" 2>&1
        rc=$?
        p=$(grep -c '^ok ' "$log")
        f=$(grep -c '^not ok ' "$log")
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
        passed=$((passed + p)); failed=$((failed + f))
        if [ "$f" -ne 0 ]; then
            echo "FAIL $t ($p passed, $f failed, exit $rc):"
            sed 's/^/    /' "$log"
        else
            echo "ok   $t ($p passed)"
            grep '^# summary: ' "$log" | sed 's/^# summary: /     /' # what a test wants seen
        fi
    done
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
