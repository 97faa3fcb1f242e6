#!/bin/sh
# make fuzz: each target of DIR (build/fuzz) for SECONDS from its committed
# corpus (tests/fuzz/corpus/NAME, read only); what it finds goes to
# DIR/work/NAME, a crash to DIR/crash-NAME-*. One line of figures a target;
# exits 1 if any target crashed (commit the crash under its corpus once fixed).
#   tests/fuzz/run.sh DIR SECONDS NAME...
set -u
dir=$1 secs=$2
shift 2
failed=0
printf '%-12s %10s %9s %6s %6s %s\n' target executions exec/s cov ft result
for t in "$@"; do
    mkdir -p "$dir/work/$t"
    log="$dir/fuzz-$t.log"
    "$dir/fuzz_$t" "$dir/work/$t" "tests/fuzz/corpus/$t" -max_total_time="$secs" -print_final_stats=1 \
        -artifact_prefix="$dir/crash-$t-" -rss_limit_mb=2048 -timeout=10 > "$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    if [ $rc = 0 ]; then res=ok; else res="CRASH (exit $rc): $log"; failed=1; fi
    printf '%-12s %10s %9s %6s %6s %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$res"
done
exit $failed
