#!/bin/sh
# Runs every benchmark of a build directory (default build/release).
# Each prints its table and RESULT lines; paste them into bench/RESULTS.md
# with the command and the date.
set -eu
dir=${1:-build/release}
echo "# $(date -u +%Y-%m-%d) $(uname -m), $(nproc) cores"
shift || true
"$dir/bench/ops" "$@"
"$dir/bench/gemm" # without AVX512-BF16: the portable kernel against sgemm
"$dir/bench/data"
"$dir/bench/embed"
"$dir/bench/embed" --precision bf16 || true
"$dir/bench/embed" --precision int8
# int8 against fp32 on the emoji eval, with make demo's model when there is one
if [ -f runs/demo/latest.safetensors ]; then VLP="$dir/vlp" sh bench/int8.sh; fi
"$dir/bench/train" --config tiny
"$dir/bench/train" --config vitb32
# bf16 (AVX512-BF16) next to the peer under torch.autocast; bench/train says
# so and exits 1 on a CPU without it, which does not stop the others
"$dir/bench/train" --config tiny --precision bf16 || true
# data parallel over MPI (needs mpirun): weak scaling 1 -> 2 ranks of 1 thread,
# and 1 rank of 2 threads at the 2-rank global batch
if command -v mpirun >/dev/null 2>&1; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    mpirun -np 1 --bind-to none "$dir/bench/dist" --threads 1 --batch-per-rank 64
    mpirun -np 2 --bind-to none "$dir/bench/dist" --threads 1 --batch-per-rank 64
    mpirun -np 1 --bind-to none "$dir/bench/dist" --threads 2 --batch-per-rank 128
fi
