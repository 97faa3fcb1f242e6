#!/bin/sh
# A full disk at every write (tests/tools/faultshim.c makes the k-th fwrite,
# fflush or fsync fail with ENOSPC, for every k in turn): `vlp train --resume`
# (data.json, metrics lines, the checkpoint, the state), `vlp data shards`
# and `vlp embed` each report the file and the error and exit non-zero; the
# run's previous checkpoint stays valid, and resuming it again gives the
# uninterrupted run's losses bit for bit; no half-written shard or .npy is
# left under its final name. Runs on the release build (the shim is preloaded
# into the tool, which ASan's runtime would want to come first).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
. "$root/tests/tap.sh"
tap_release_only "the fault tests run once, on the release build"
vlp=$here/../vlp
shim=$here/tools/libfaultshim.so
tap_tmpdir faults
cd "$tmp" || exit 1
export VLP_PROGRESS_SECONDS=0 OMP_NUM_THREADS=2

mkdir img
"$here/tools/make_pairs" img 16 > pairs.tsv
head -n 5 pairs.tsv > four.tsv
# a small model: every write is failed in turn, each a run of its own
cat > small.json <<'JSON'
{"embed_dim": 16, "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
 "text_cfg": {"context_length": 16, "vocab_size": 512, "width": 32, "layers": 1, "heads": 2}}
JSON
run="--threads 2 --workers 1 --log-every 1"
new="--train-data pairs.tsv --model-config small.json --batch 8 --warmup 1 --tokenizer-merges 40 --save-every 2"
"$vlp" train $new $run --out ref --steps 4 > ref.log 2>&1 || tap_not_ok "the reference run" ref.log
"$vlp" train $new $run --out base --steps 2 > base.log 2>&1 || tap_not_ok "the run to resume" base.log
metrics_losses ref/metrics.jsonl > ref.loss

# count_writes OUT CMD...: how many writes CMD makes (none failed)
count_writes() {
    out=$1; shift
    VLP_FAULT_AT=0 VLP_FAULT_COUNT="$tmp/$out.count" LD_PRELOAD="$shim" "$@" > "$out.log" 2>&1
    cat "$tmp/$out.count"
}

# every write of resuming to step 4: data.json, metrics.jsonl (rewritten, then
# 2 lines), a checkpoint and its state, and the directory syncs after each rename
rm -rf c && cp -r base c
n=$(count_writes count "$vlp" train --out c --resume --steps 4 $run)
failed=0
k=1
while [ "$k" -le "$n" ]; do
    rm -rf f && cp -r base f
    VLP_FAULT_AT=$k LD_PRELOAD="$shim" "$vlp" train --out f --resume --steps 4 $run > fault.log 2>&1
    rc=$?
    if [ $rc = 0 ] || ! grep -q "f/.*No space left on device" fault.log; then
        echo "write $k of $n: exit $rc" >> faults.log; cat fault.log >> faults.log; failed=$((failed + 1))
    elif ! "$vlp" train --out f --resume --steps 4 $run > again.log 2>&1 ||
         ! metrics_losses f/metrics.jsonl | cmp -s - ref.loss; then
        echo "write $k of $n: the run did not resume to the reference losses" >> faults.log
        cat again.log >> faults.log; failed=$((failed + 1))
    fi
    k=$((k + 1))
done
[ "$n" -ge 5 ] && [ $failed = 0 ] && tap_ok "train --resume: each of its $n writes failing is reported, exits non-zero, and the run resumes bit-exactly" ||
    { echo "$n writes" >> faults.log; tap_not_ok "train --resume with a full disk ($failed of $n writes)" faults.log; }

# vlp data shards and vlp embed: reported, non-zero, nothing half-written under the final name
shards_ok=0 embed_ok=0
n=$(count_writes shards "$vlp" data shards --data four.tsv --out sh/s --samples-per-shard 2)
k=1
while [ "$k" -le "$n" ]; do
    rm -rf sh
    VLP_FAULT_AT=$k LD_PRELOAD="$shim" "$vlp" data shards --data four.tsv --out sh/s --samples-per-shard 2 > fault.log 2>&1
    rc=$?
    ok=1
    [ $rc != 0 ] && grep -q "sh/s-0000[01].tar.*No space left on device" fault.log || ok=0
    for t in sh/s-*.tar; do [ -e "$t" ] && ! tar tf "$t" > /dev/null 2>&1 && ok=0; done
    [ $ok = 1 ] || { echo "shards write $k of $n: exit $rc" >> shards.log; cat fault.log >> shards.log; shards_ok=1; }
    k=$((k + 1))
done
[ "$n" -ge 2 ] && [ $shards_ok = 0 ] && tap_ok "data shards: each of its $n writes failing is reported; every shard left is whole" ||
    tap_not_ok "data shards with a full disk" shards.log
tail -n +2 pairs.tsv | cut -f2 > texts.txt
n=$(count_writes embed "$vlp" embed --model ref/latest.safetensors --texts texts.txt --out whole.npy)
k=1
while [ "$k" -le "$n" ]; do
    rm -f e.npy
    VLP_FAULT_AT=$k LD_PRELOAD="$shim" "$vlp" embed --model ref/latest.safetensors --texts texts.txt --out e.npy > fault.log 2>&1
    rc=$?
    # an .npy left must be the whole one (a failed directory sync comes after the rename)
    if [ $rc = 0 ] || ! grep -q "e.npy.*No space left on device" fault.log ||
       { [ -e e.npy ] && ! cmp -s e.npy whole.npy; }; then
        echo "embed write $k of $n: exit $rc" >> embed.log; cat fault.log >> embed.log; embed_ok=1
    fi
    k=$((k + 1))
done
[ "$n" -ge 1 ] && [ $embed_ok = 0 ] && tap_ok "embed: each of its $n writes failing is reported; no partial .npy" ||
    tap_not_ok "embed with a full disk" embed.log
# damaged data while training: a shard cut in half, an image whose bytes are
# garbage after its signature, a row with a 1 MB caption: skipped, counted,
# named, and the run trains on
"$vlp" data shards --data pairs.tsv --out dmg/s --samples-per-shard 8 > dmg.log 2>&1
size=$(wc -c < dmg/s-00001.tar)
truncate -s $((size / 2)) dmg/s-00001.tar
dd if=/dev/zero of=dmg/s-00000.tar bs=1 seek=$((512 + 16)) count=64 conv=notrunc 2> /dev/null
{ cat pairs.tsv; printf '%s\t' "$tmp/img/img000.png"; head -c 1048576 /dev/zero | tr '\0' x; printf '\n'; } > long.tsv
tap_check "train on a cut shard and a garbage image" dmg-train.log "$vlp" train \
    --train-data 'dmg/s-{00000..00001}.tar' --model-config small.json --batch 4 --steps 3 --warmup 1 \
    --tokenizer-merges 40 --out dmg-run $run
tap_grep "the damaged samples are counted and the first named" dmg-train.log "unusable samples; the first: dmg/s-0000"
tap_check "train on a table with a 1 MB caption" long-train.log "$vlp" train --train-data long.tsv \
    --model-config small.json --batch 4 --steps 2 --warmup 1 --tokenizer-merges 40 --out long-run $run
tap_grep "the 1 MB row is skipped, named" long-train.log "long.tsv:18: a row longer than 262144 bytes"

# a shard changed while the run reads it (tests/tools/swapshim.c): on the 4th
# opening of sw/s-00001.tar (the tokenizer's two passes and the training
# stream's count come first: the 4th is epoch 0's read), after its 5th read
# (a sample and a half), the file is cut, replaced or removed. The open
# stream reads what is left of it; later epochs open what is there now.
# Skips are counted as the run consumes them, not as the reader runs ahead.
"$vlp" data shards --data pairs.tsv --out sw/s --samples-per-shard 8 > sw.log 2>&1
head -n 6 pairs.tsv > five.tsv
"$vlp" data shards --data five.tsv --out swnew/n --samples-per-shard 8 > sw.log 2>&1
swap_run() { # NAME ACTION SHARDS: train 8 steps of 4 over a fresh copy of sw/
    rm -rf w && mkdir w && cp sw/s-*.tar w/ && cp swnew/n-00000.tar w/new.tar
    VLP_SWAP_PATH=w/s-00001.tar VLP_SWAP_AT=4:5 VLP_SWAP_DO=$2 LD_PRELOAD=$here/tools/libswapshim.so \
        timeout 120 "$vlp" train --train-data "$3" --model-config small.json --batch 4 --steps 8 --warmup 1 \
        --tokenizer-merges 40 --out "swap-$1" $run > "swap-$1.log" 2>&1
}
sw2='w/s-{00000..00001}.tar'
swap_done() { grep -q "swapshim: $1 w/s-00001.tar after read 5 of open 4: done" "$2" && [ -f "$3/ckpt-00000008.safetensors" ]; }
swap_run cut truncate:3000 "$sw2"
tap_if "a shard cut while read: the run trains its 8 steps" swap-cut.log swap_done truncate:3000 swap-cut.log swap-cut
# epoch 0 reads the shard as it is cut (sample 10 lost), epochs 1 to 3 the cut
# file (sample 9 lost): 8 steps of 4 consume 4 epochs of 9 or 10 samples, so
# 4 skips, not the dozens the reader has run ahead through
tap_if "the cut is named, and counted once an epoch as consumed" swap-cut.log \
    grep -q "skipped 4 unusable samples; the first: w/s-00001.tar: sample '0000000" swap-cut.log
swap_run replaced replace:w/new.tar "$sw2"
tap_if "a shard replaced while read: the run trains its 8 steps" swap-replaced.log \
    swap_done replace:w/new.tar swap-replaced.log swap-replaced
tap_no_grep "the open shard is read to its end, the new one after it: nothing skipped" swap-replaced.log unusable
swap_run removed remove "$sw2"
tap_if "a shard removed while read: the run trains its 8 steps" swap-removed.log \
    swap_done remove swap-removed.log swap-removed
tap_if "the later epochs' missing shard is named and counted" swap-removed.log \
    grep -q "skipped [1-2] unusable samples; the first: cannot open w/s-00001.tar: No such file" swap-removed.log
swap_run last remove w/s-00001.tar
rc=$?
tap_if "the only shard removed while read: exit 1 with a message naming it (no hang)" swap-last.log \
    [ $rc = 1 -a "$(grep -c 'epoch 1 has 0 usable samples, fewer than the batch of 4 (1 unusable so far; the first: cannot open w/s-00001.tar' swap-last.log)" = 1 ]
# a pool that changes between the two passes of vlp data filter: s-00001.tar
# is replaced while pass 1 reads it (its 30th read), so pass 2 opens another
# shard; the passes' fingerprints differ, the command says so, exits 1 and
# leaves no output (the 3 shards of 4 it completed are removed)
rm -rf w && mkdir w && cp sw/s-*.tar w/ && cp swnew/n-00000.tar w/new.tar
VLP_SWAP_PATH=w/s-00001.tar VLP_SWAP_AT=1:30 VLP_SWAP_DO=replace:w/new.tar LD_PRELOAD=$here/tools/libswapshim.so \
    "$vlp" data filter --data "$sw2" --out changed/c --samples-per-shard 4 > changed.log 2>&1
rc=$?
tap_if "a pool changed between filter's passes: exit 1, said, nothing left" changed.log \
    [ $rc = 1 -a "$(grep -c 'the pool changed between the two passes' changed.log)" = 1 -a \
      "$(ls changed 2>/dev/null | grep -c tar)" = 0 ]
tap_end
