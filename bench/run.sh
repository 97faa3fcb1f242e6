#!/bin/sh
# Runs every benchmark of a build directory (default build/release).
# Each prints its table and RESULT lines; paste them into bench/RESULTS.md
# with the command and the date.
set -eu
dir=${1:-build/release}
echo "# $(date -u +%Y-%m-%d) $(uname -m), $(nproc) cores"
shift || true
"$dir/bench/ops" "$@"
"$dir/bench/gemm" || true # exits 1 without AVX512-BF16
"$dir/bench/data"
"$dir/bench/embed"
"$dir/bench/embed" --precision bf16 || true
"$dir/bench/train" --config tiny
"$dir/bench/train" --config vitb32
# bf16 (AVX512-BF16) next to the peer under torch.autocast; bench/train says
# so and exits 1 on a CPU without it, which does not stop the others
"$dir/bench/train" --config tiny --precision bf16 || true
