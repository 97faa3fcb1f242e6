#!/bin/sh
# Every committed fuzz input (tests/fuzz/corpus/NAME: seeds and the inputs of
# fixed crashes) through its target, built without libFuzzer (replay.c):
# a regression fails here, under ASan/UBSan in that build. Prints the count.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
. "$root/tests/tap.sh"
cd "$root" || exit 1
export VLP_FUZZ_VOCAB="$root/vocab/bpe_simple_vocab_16e6.txt.gz"
total=0
tap_tmpdir replay
for bin in "$here"/fuzz/replay_*; do
    case $bin in *.d) continue ;; esac # the compiler's dependency files
    name=${bin##*/replay_}
    corpus=$root/tests/fuzz/corpus/$name
    if [ ! -d "$corpus" ]; then echo "no corpus for $name" > "$tmp/$name.log"; tap_not_ok "replay $name: no corpus" "$tmp/$name.log"; continue; fi
    if TMPDIR=$tmp "$bin" "$corpus" > "$tmp/$name.log" 2>&1; then
        n=$(sed -n 's/^replayed \([0-9]*\) inputs$/\1/p' "$tmp/$name.log")
        total=$((total + ${n:-0}))
        tap_ok "replay $name: $n inputs"
    else tap_not_ok "replay $name" "$tmp/$name.log"; fi
done
echo "# summary: replayed $total committed fuzz inputs through $tap_n targets"
tap_end
