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

# the tests that start threads of their own (data loaders' workers, the
# thread-count checks, a GEMM inside a 2-thread region), skipped under an
# emulator that cannot
THREADED_TESTS="test_threads test_dataset test_train test_dist test_gemm_bf16"
# the tests of the kernels that exist at several instruction-set levels:
# run again at every level below the CPU's own (VLP_CPU), so that one
# machine tests each path it can run
LEVEL_TESTS="test_levels test_attention test_gemm_int8 test_gemm_bf16 test_ops_ref test_ops_grad test_clip test_int8_model test_coca test_mae test_fusion test_rerank"

# VLP_TEST_RUNNER (e.g. "qemu-aarch64 -L /usr/aarch64-linux-gnu", make
# test-arm64) runs the C tests of a foreign build; of the scripts only those
# that take it themselves run, the others exec the build's vlp directly
runner=${VLP_TEST_RUNNER:-}
# qemu-user gives the guest the emulator's /proc/self/exe, so a foreign vlp
# cannot find its data beside itself: the repository's, by VLP_DATA_DIR
if [ -n "$runner" ] && [ -z "${VLP_DATA_DIR:-}" ]; then
    VLP_DATA_DIR=$(cd "$(dirname "$0")/.." && pwd); export VLP_DATA_DIR
fi
RUNNER_SCRIPTS="test_main_commands"
TEST_TIMEOUT=${VLP_TEST_TIMEOUT:-900} # seconds a test may take under a runner before it counts as hung

passed=0; failed=0; skipped=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# listed NAME LIST: NAME is one of the words of LIST
listed() { case " $2 " in *" $1 "*) return 0 ;; esac; return 1; }
# run_one TEST LABEL: runs it (VLP_CPU as exported), counts its TAP lines
run_one() {
    t=$1; label=$2
    if [ -n "$no_threads" ] && listed "$(basename "$t")" "$THREADED_TESTS"; then
        echo "1..0 # SKIP it starts threads, which $runner cannot start here" >"$log"
    elif [ -z "$runner" ]; then
        "$t" >"$log" 2>&1
    elif [ "$(head -c 2 "$t")" != "#!" ]; then
        timeout "$TEST_TIMEOUT" $runner "$t" >"$log" 2>&1
    else
        if listed "$(basename "$t")" "$RUNNER_SCRIPTS"; then "$t" >"$log" 2>&1
        else echo "1..0 # SKIP a script that execs the build's vlp itself, which $runner runs only through VLP_TEST_RUNNER" >"$log"
        fi
    fi
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
    # an emulator that cannot start a thread (qemu-user hangs in clone in some
    # sandboxes): one OpenMP thread, and the tests that start their own skipped
    no_threads=
    if [ -n "$runner" ] && ! timeout 60 $runner "$dir/tests/tools/thread_probe" >/dev/null 2>&1; then
        no_threads=1
        export OMP_NUM_THREADS=1
        echo "note: $runner cannot start a thread here: OMP_NUM_THREADS=1, the threaded tests skipped"
    fi
    for t in "$dir"/tests/test_*; do
        [ -x "$t" ] || continue
        run_one "$t" ""
    done
    # under an emulator, only the tests of the kernels that have levels on
    # every architecture (emulated, the others take minutes a level)
    level_tests=$LEVEL_TESTS
    [ -n "$runner" ] && level_tests="test_levels test_attention test_gemm_int8 test_int8_model"
    # the levels below this CPU's own (vlp info --levels: those it runs, lowest first)
    levels=$($runner "$dir/vlp" info --levels 2>/dev/null | awk -F'\t' '$2 == "yes" { print $1 }' | sed '$d')
    for level in $levels; do
        for name in $level_tests; do
            [ -x "$dir/tests/$name" ] || continue
            VLP_CPU=$level run_one "$dir/tests/$name" " [VLP_CPU=$level]"
        done
    done
done
unset VLP_CPU
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
