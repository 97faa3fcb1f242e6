#!/bin/sh
# Training through the C API (examples/train.c, compiled against
# include/vlp.h alone): the same options by the same names give the run
# `vlp train` makes — the same losses and checkpoint bit for bit; a run
# closed at step 3 and resumed from its directory goes on to the same
# losses; the evaluation comes back as numbers; bad options are refused
# with the option and its range named.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
. "$root/tests/tap.sh"
vlp=$here/../vlp
api=$here/../examples/train
tap_tmpdir train-api
cd "$tmp" || exit 1
export VLP_PROGRESS_SECONDS=0 OMP_NUM_THREADS=2
# vlp drops an OPENBLAS_CORETYPE that forces weaker kernels than the CPU's
# (tools/blas_env.c); a program of the user's does not: both run on the
# CPU's own sgemm here, so the bits can be compared
unset OPENBLAS_CORETYPE
# ... and at the CPU's own level: vlp under a lowered VLP_CPU sets the BLAS
# core of that level before it starts (tools/blas_env.c), a user's program
# does not, so the two would multiply differently (the levels' own tests
# run the kernels at each level)
unset VLP_CPU

mkdir img
"$here/tools/make_pairs" img 32 > pairs.tsv
head -n 17 pairs.tsv > val.tsv

tap_check "vlp train: 6 steps" cli.log "$vlp" train --train-data pairs.tsv --val-data val.tsv \
    --zeroshot-data val.tsv --label-key colour --out cli --batch 8 --warmup 1 \
    --tokenizer-merges 60 --workers 1 --threads 2 --steps 6
set -- train_data=pairs.tsv val_data=val.tsv zeroshot_data=val.tsv label_key=colour batch=8 \
    warmup=1 tokenizer_merges=60 workers=1 steps=6
tap_check "the C API: 6 steps" api.log "$api" "$@" out=api
tap_check "the C API: 3 steps, closed, resumed, 3 more" resumed.log "$api" --stop-at 3 "$@" out=resumed
metrics_losses cli/metrics.jsonl > cli.loss
metrics_losses api/metrics.jsonl > api.loss
metrics_losses resumed/metrics.jsonl > resumed.loss
tap_if "6 losses, the same bits as vlp train's" api.loss \
    sh -c '[ "$(wc -l < cli.loss)" = 6 ] && cmp -s cli.loss api.loss'
tap_if "resumed: the same 6 losses" resumed.loss cmp -s cli.loss resumed.loss
tap_grep "resumed at step 3" resumed.log "resumed at step 3"
tap_if "the same checkpoint, bit for bit" api.log cmp -s cli/latest.safetensors api/latest.safetensors
tap_if "the resumed run's checkpoint too" resumed.log cmp -s cli/latest.safetensors resumed/latest.safetensors
# the evaluation as numbers: the CLI's RESULT line's R@1
want=$(sed -n 's/^RESULT name=val step=6 images=16 .* i2t_r1=\([0-9.]*\) .*/\1/p' cli.log)
tap_if "evaluation: i2t R@1 $want as vlp train's" api.log grep -q "^eval step 6 images 16 i2t_r1 $want " api.log
tap_grep "evaluation: zero-shot over 8 classes" api.log "zeroshot step 6 classes 8 top1 "
tap_grep "messages reach the callback" api.log "tokenizer: learnt"

refuse() { what=$1 pattern=$2; shift 2; tap_refused "$what" "$pattern" "$api" "$@"; } # WHAT PATTERN ARGS...
refuse "an unknown option" "unknown option 'bogus'" bogus=1
refuse "a batch out of range, with the range" "--batch wants a whole number in 2..1048576, got '1'" batch=1
refuse "another objective's option" "--mask-ratio is an option of mae, clip-mae, not of the clip objective" \
    train_data=pairs.tsv out=x1 mask_ratio=0.5
refuse "another learning rate on resume" "--lr 0.0005, not 0.1" out=api resume=on lr=0.1
tap_end
