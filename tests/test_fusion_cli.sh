#!/bin/sh
# vlp train --objective itc-itm-mlm (ALBEF's ITC + ITM + MLM over the fusion
# encoder) on the user's pairs: it trains, its figures are finite; with the
# ITM and MLM weights at 0 its losses are the clip objective's, bit for bit
# (the contrastive part and the towers' plumbing are CLIP's); accumulation
# runs; a config without fusion_cfg and micro-batches of one are refused by
# name. Runs the build's own vlp (so under ASan too).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
. "$root/tests/tap.sh"
vlp=$here/../vlp
tap_tmpdir fusion-cli
cd "$tmp" || exit 1
export VLP_PROGRESS_SECONDS=0 OMP_NUM_THREADS=2

mkdir img
"$here/tools/make_pairs" img 32 > pairs.tsv
common="--train-data pairs.tsv --model-config tiny-fusion --batch 8 --warmup 1 --tokenizer-merges 60 --threads 2 --workers 1 --steps 3"

tap_check "itc-itm-mlm trains" fus.log "$vlp" train $common --out fus --objective itc-itm-mlm
metrics_losses fus/metrics.jsonl > fus.loss
tap_if "3 finite losses" fus.loss sh -c '[ "$(wc -l < fus.loss)" = 3 ] && ! grep -qiE "nan|inf" fus.loss'
tap_if "the checkpoint holds the fusion encoder, its heads and [MASK]" fus.log \
    sh -c 'grep -aq "text_fusion.cross_attn.1.ln_1_kv.bias" fus/latest.safetensors &&
           grep -aq "text_fusion.itm_head.weight" fus/latest.safetensors &&
           grep -aq "text_fusion.mask_token" fus/latest.safetensors' 

tap_check "clip on the same config" clip.log "$vlp" train $common --out clip
tap_check "itc-itm-mlm with ITM and MLM weighted 0" zero.log "$vlp" train $common --out zero \
    --objective itc-itm-mlm --itm-weight 0 --mlm-weight 0
metrics_losses clip/metrics.jsonl > clip.loss
metrics_losses zero/metrics.jsonl > zero.loss
tap_if "... the clip objective's losses, bit for bit" zero.loss cmp -s clip.loss zero.loss
tap_if "... and with them weighted, others" fus.loss sh -c '! cmp -s clip.loss fus.loss'

tap_check "with accumulation (negatives from each micro-batch)" acc.log "$vlp" train $common --out acc \
    --objective itc-itm-mlm --accum 2

refuse() { what=$1 pattern=$2; shift 2; tap_refused "$what" "$pattern" "$vlp" train "$@"; } # WHAT PATTERN ARGS...
refuse "a config without fusion_cfg" "the itc-itm-mlm objective needs a model with a fusion encoder (config fusion_cfg)" \
    --train-data pairs.tsv --out x1 --objective itc-itm-mlm --steps 1
refuse "micro-batches of one" "it needs at least 2 samples a micro-batch" \
    $common --out x2 --objective itc-itm-mlm --accum 8
tap_end
