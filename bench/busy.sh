#!/bin/sh
# Training beside another busy process (issue 30, item 8): `vlp train` of the
# tiny model on 256 generated PNG pairs, 20 steps of 32, with vlp's default
# (idle OpenMP workers wait passively when other processes run at start) and
# with libgomp's own default spin (GOMP_SPINCOUNT=300000, which also turns
# vlp's choice off: the behaviour before), alternating, on an idle machine and
# beside one busy-looping process. Prints the samples/s of each run and RESULT
# lines with the medians.
#   bench/busy.sh [ROUNDS]    (default 3; run from the repository after make)
set -eu
rounds=${1:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
vlp=$root/build/release/vlp
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vlp-busy.XXXXXX")
busy=
trap '[ -n "$busy" ] && kill $busy 2>/dev/null; rm -rf "$tmp"' EXIT INT TERM
mkdir "$tmp/img"
"$root/build/release/tests/tools/make_pairs" "$tmp/img" 256 > "$tmp/pairs.tsv"
rate() { # ENV...: one run's samples/s while training
    rm -rf "$tmp/run"
    env "$@" "$vlp" train --train-data "$tmp/pairs.tsv" --out "$tmp/run" --batch 32 --steps 20 --warmup 2 \
        --tokenizer-merges 60 --workers 1 --save-every 0 2>&1 |
        sed -n 's/.* \([0-9.]*\) samples\/s while training.*/\1/p'
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
isa=$("$vlp" info 2>&1 | sed -n 's/.*isa = \([^ ]*\).*/\1/p' | head -1)
for load in idle busy; do
    if [ $load = busy ]; then sh -c 'while :; do :; done' & busy=$!; sleep 1; fi
    : > "$tmp/new" ; : > "$tmp/old"
    r=0
    while [ $r -lt "$rounds" ]; do
        a=$(rate -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT); b=$(rate -u OMP_WAIT_POLICY GOMP_SPINCOUNT=300000)
        echo "$load round $((r + 1)): vlp default $a samples/s, spinning $b samples/s"
        echo "$a" >> "$tmp/new"; echo "$b" >> "$tmp/old"
        r=$((r + 1))
    done
    new=$(median < "$tmp/new"); old=$(median < "$tmp/old")
    echo "RESULT name=busy load=$load isa=$isa default=$new spinning=$old ratio=$(awk "BEGIN { printf \"%.2f\", $new / $old }")"
    if [ -n "$busy" ]; then kill $busy; busy=; fi
done
