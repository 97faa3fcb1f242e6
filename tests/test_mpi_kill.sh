#!/bin/sh
# One rank of `mpirun -np 2 vlp train` killed with SIGKILL mid-run: the job
# ends within seconds, the message names the rank, and `--resume` continues
# from the last checkpoint to the uninterrupted run's losses bit for bit.
# Runs on the release build, where mpirun is installed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
. "$root/tests/tap.sh"
tap_release_only "the MPI fault test runs once, on the release build"
if ! command -v mpirun > /dev/null 2>&1; then echo "1..0 # SKIP no mpirun"; exit 0; fi
vlp=$here/../vlp
tap_tmpdir mpi-kill
cd "$tmp" || exit 1
export VLP_PROGRESS_SECONDS=0 OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi="mpirun -np 2 --bind-to none"
mkdir img
"$here/tools/make_pairs" img 32 > pairs.tsv
cat > small.json <<'JSON'
{"embed_dim": 16, "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
 "text_cfg": {"context_length": 16, "vocab_size": 512, "width": 32, "layers": 1, "heads": 2}}
JSON
args="--train-data pairs.tsv --model-config small.json --batch 8 --warmup 1 --tokenizer-merges 40 --threads 1 --workers 1 --log-every 1 --steps 40 --save-every 4"

tap_check "the uninterrupted 2-rank run" ref.log $mpi "$vlp" train $args --out ref
$mpi "$vlp" train $args --out cut > cut.log 2>&1 &
job=$!
i=0
while [ $i -lt 600 ] && ! grep -q '^{"step":9,' cut/metrics.jsonl 2>/dev/null; do sleep 0.05; i=$((i + 1)); done
rank1=""
for p in $(pgrep -f "$vlp train"); do
    tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1' && rank1=$p
done
if [ -n "$rank1" ]; then
    kill -9 "$rank1"
    t0=$(date +%s)
    wait $job
    rc=$?
    t1=$(date +%s)
    [ $rc != 0 ] && [ $((t1 - t0)) -le 20 ] && tap_ok "the job ends (exit $rc) $((t1 - t0)) s after rank 1 is killed" ||
        tap_not_ok "the job ends soon after rank 1 is killed (exit $rc, $((t1 - t0)) s)" cut.log
    tap_grep "the message names the rank" cut.log "rank 1"
else
    echo "rank 1 not found" > cut.log
    tap_not_ok "rank 1 found and killed mid-run" cut.log
    wait $job
fi
tap_check "--resume from the last checkpoint" resume.log $mpi "$vlp" train --out cut --resume --threads 1 --workers 1
metrics_losses ref/metrics.jsonl > ref.loss
metrics_losses cut/metrics.jsonl > cut.loss
if [ "$(wc -l < ref.loss)" = 40 ] && cmp -s ref.loss cut.loss; then tap_ok "killed + resumed = uninterrupted: 40 losses bit for bit"
else paste ref.loss cut.loss > diff.log; tap_not_ok "killed + resumed = uninterrupted" diff.log; fi
tap_end
