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
tap_end
