#!/bin/sh
# vlp train --objective itc-itm-mlm (ALBEF's ITC + ITM + MLM over the fusion
# encoder) on the user's pairs: it trains, its figures are finite; with the
# ITM and MLM weights at 0 its losses are the clip objective's, bit for bit
# (the contrastive part and the towers' plumbing are CLIP's); accumulation
# runs; a config without fusion_cfg and micro-batches of one are refused by
# name. The trained encoder in use: vlp eval --rerank (re-ranking the top 1
# changes nothing; refused without retrieval or a fusion encoder) and vlp
# match (every pair, --pairs, a broken image skipped and named, refusals).
# Runs the build's own vlp (so under ASan too).
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

# using the trained encoder: vlp eval --rerank K, vlp match
result() { grep "^RESULT name=$1 " "$2" | sed 's/^RESULT name=[a-z_]* //; s/^k=[0-9]* //'; } # NAME LOG: its figures
tap_check "vlp eval --rerank 8 (the set's 32 images, each query's top 8)" rr8.log "$vlp" eval \
    --model fus/latest.safetensors --data pairs.tsv --retrieval --rerank 8
tap_grep "... prints the re-ranked figures" rr8.log "RESULT name=retrieval_rerank k=8 "
tap_grep "... with the ITM pairs' progress (32 images + 32 texts, 8 each)" rr8.log "ITM pairs 512/512"
tap_check "vlp eval --rerank 1" rr1.log "$vlp" eval --model fus/latest.safetensors --data pairs.tsv --retrieval --rerank 1
result retrieval rr1.log > rr1.dual
result retrieval_rerank rr1.log > rr1.rerank
tap_if "... re-orders nothing: the dual encoder's figures" rr1.log sh -c '[ -s rr1.dual ] && cmp -s rr1.dual rr1.rerank'
tap_refused "--rerank needs retrieval" "re-ranking (4) is retrieval's" "$vlp" eval --model fus/latest.safetensors \
    --data pairs.tsv --zeroshot --label-key title --rerank 4
tap_refused "--rerank needs a fusion encoder" "re-ranking needs a model with a fusion encoder" "$vlp" eval \
    --model "$root/tests/ref/api_model.safetensors" --vocab "$root/tests/ref/api_merges.txt" --data pairs.tsv --rerank 4

cut -f1 pairs.tsv | sed 1d | head -5 > five.txt
cut -f2 pairs.tsv | sed 1d | head -3 > three.txt
cut -f2 pairs.tsv | sed 1d | head -5 > five_texts.txt
tap_check "vlp match: 5 images, 3 texts" match.log sh -c "'$vlp' match --model fus/latest.safetensors --images five.txt --texts three.txt > match.tsv"
tap_if "... a header and 15 pairs, each a probability" match.tsv \
    sh -c '[ "$(sed -n 1p match.tsv)" = "$(printf "image\ttext\tmatch\tcosine")" ] && [ "$(wc -l < match.tsv)" = 16 ] &&
           awk -F"\t" "NR > 1 && !(\$3 > 0 && \$3 < 1 && \$4 >= -1 && \$4 <= 1) { bad = 1 } END { exit bad }" match.tsv'
tap_check "vlp match --pairs: line by line" pairs.log sh -c "'$vlp' match --model fus/latest.safetensors --images five.txt --texts five_texts.txt --pairs > pairs_out.tsv"
tap_check "... and every pair of the same" pairs_all.log sh -c "'$vlp' match --model fus/latest.safetensors --images five.txt --texts five_texts.txt > all_out.tsv"
tap_if "... the same probabilities for the same pairs (1e-5)" pairs_out.tsv \
    sh -c '[ "$(wc -l < pairs_out.tsv)" = 6 ] &&
           awk -F"\t" "NR == FNR { p[\$1 FS \$2] = \$3; next } FNR > 1 { n++; d = p[\$1 FS \$2] - \$3; if (d > 1e-5 || d < -1e-5) bad = 1 }
                      END { exit bad || n != 5 }" all_out.tsv pairs_out.tsv'
printf 'not an image' > broken.png
(cat five.txt; echo broken.png) > six.txt
"$vlp" match --model fus/latest.safetensors --images six.txt --texts three.txt > skip.tsv 2> skip.log
echo "exit $?" >> skip.log
tap_if "a broken image is named, skipped, and the exit is 3" skip.log \
    sh -c 'grep -q "skipped: broken.png: not a JPEG" skip.log && grep -q "exit 3" skip.log && [ "$(wc -l < skip.tsv)" = 16 ]'
"$vlp" match --model fus/latest.safetensors --images six.txt --texts three.txt --on-error stop > stop.tsv 2> stop.log
echo "exit $?" >> stop.log
tap_if "--on-error stop: the broken image named, exit 1, nothing printed" stop.log \
    sh -c 'grep -q "vlp match: broken.png: not a JPEG" stop.log && grep -q "exit 1" stop.log && [ ! -s stop.tsv ]'
tap_refused "--pairs with unequal lists" "--pairs scores line by line, but six.txt has 6 images and three.txt 3 texts" \
    "$vlp" match --model fus/latest.safetensors --images six.txt --texts three.txt --pairs
: > empty.txt
tap_refused "a missing list" "nowhere.txt" "$vlp" match --model fus/latest.safetensors --images nowhere.txt --texts three.txt
tap_refused "an empty list of texts" "empty.txt holds no text" "$vlp" match --model fus/latest.safetensors \
    --images five.txt --texts empty.txt
tap_refused "both lists from stdin" "--images and --texts cannot both be read from stdin" "$vlp" match \
    --model fus/latest.safetensors --images - --texts -
tap_check "texts from stdin" stdin.log sh -c "'$vlp' match --model fus/latest.safetensors --images five.txt --texts - < three.txt > stdin.tsv"
tap_if "... the same lines as from the file" stdin.tsv cmp -s stdin.tsv match.tsv
tap_refused "a model without a fusion encoder" "has no fusion encoder" "$vlp" match \
    --model "$root/tests/ref/api_model.safetensors" --vocab "$root/tests/ref/api_merges.txt" --images five.txt --texts three.txt

refuse() { what=$1 pattern=$2; shift 2; tap_refused "$what" "$pattern" "$vlp" train "$@"; } # WHAT PATTERN ARGS...
refuse "a config without fusion_cfg" "the itc-itm-mlm objective needs a model with a fusion encoder (config fusion_cfg)" \
    --train-data pairs.tsv --out x1 --objective itc-itm-mlm --steps 1
refuse "micro-batches of one" "it needs at least 2 samples a micro-batch" \
    $common --out x2 --objective itc-itm-mlm --accum 8
tap_end
