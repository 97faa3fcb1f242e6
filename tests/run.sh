#!/bin/sh
# Runs every test binary of the given build directories, the kernel tests
# again at each instruction-set level below the CPU's (VLP_CPU), and ends
# with the line "N passed, N failed, N skipped" (a test that cannot run on
# this CPU is a skip, never a failure); a passing test's "# summary: ..."
# lines are shown under it. A binary that crashes or exits non-zero without
# naming a failed test counts as one failure. Exit status: 0 iff none failed.
#   tests/run.sh build/release build/asan
set -u
[ $# -ge 1 ] || { echo "usage: tests/run.sh BUILD_DIR..." >&2; exit 2; }

export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1:halt_on_error=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export CMOCKA_MESSAGE_OUTPUT=TAP
# tests pick their thread count; keep the user's environment from changing kernels
unset OPENBLAS_CORETYPE VLP_CPU VLP_KEEP_OPENBLAS_CORETYPE

# the tests of the kernels that exist at several instruction-set levels:
# run again at every level below the CPU's own (VLP_CPU), so that one
# machine tests each path it can run
LEVEL_TESTS="test_levels test_attention test_gemm_int8 test_gemm_bf16 test_ops_ref test_ops_grad test_clip test_int8_model test_coca test_mae"

passed=0; failed=0; skipped=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# run_one TEST LABEL: runs it (VLP_CPU as exported), counts its TAP lines
run_one() {
    t=$1; label=$2
    "$t" >"$log" 2>&1
    rc=$?
    # "ok N # SKIP", "not ok N # SKIP" (cmocka) and "1..0 # SKIP" (a whole script) are skips
    s=$(grep -cE '^((not )?ok .*|1\.\.0 )# SKIP' "$log")
    p=$(grep -E '^ok ' "$log" | grep -vc '# SKIP')
    f=$(grep -E '^not ok ' "$log" | grep -vc '# SKIP')
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    if [ "$f" -ne 0 ]; then
        echo "FAIL $t$label ($p passed, $f failed, exit $rc):"
        sed 's/^/    /' "$log"
    else
        echo "ok   $t$label ($p passed$([ "$s" -ne 0 ] && echo ", $s skipped"))"
        grep '^# summary: ' "$log" | sed 's/^# summary: /     /' # what a test wants seen
        grep -E '^(not )?ok .*# SKIP|^1\.\.0 # SKIP' "$log" | sed 's/^/     skipped: /'
    fi
}
for dir in "$@"; do
    unset VLP_CPU
    for t in "$dir"/tests/test_*; do
        [ -x "$t" ] || continue
        run_one "$t" ""
    done
    # the levels below this CPU's own (vlp info --levels: those it runs, lowest first)
    levels=$("$dir/vlp" info --levels 2>/dev/null | awk -F'\t' '$2 == "yes" { print $1 }' | sed '$d')
    for level in $levels; do
        for name in $LEVEL_TESTS; do
            [ -x "$dir/tests/$name" ] || continue
            VLP_CPU=$level run_one "$dir/tests/$name" " [VLP_CPU=$level]"
        done
    done
done
unset VLP_CPU
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
