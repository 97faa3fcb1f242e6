#!/bin/sh
# The curation experiment of docs/curation.md on the emoji corpus: 40% of
# the training captions replaced by other emoji's (scripts/make-noisy.sh,
# seed 1), then `tiny` trained for the demo's budget (DEMO_STEPS of batch 128,
# as make demo) on
#   (a) the clean pool, (b) the noisy pool,
#   (c) the noisy pool filtered by CLIP score: the top KEEP of it under a
#       model trained on the noisy pool itself for SCORE_STEPS steps,
#   (d) the noisy pool balanced (MetaCLIP) over the corpus's subcategory and
#       category names, t = BALANCE_T,
# each evaluated on the held-out twitter images (retrieval, zero-shot over
# the 9 categories), and the filter's precision and recall on the planted
# noise. Needs make demo's data (scripts/get-data.sh data/emoji) and the
# release build. Prints a markdown table; the runs go to $OUT.
#   bench/curation.sh [OUT (runs/curation)]
set -eu
OUT=${1:-runs/curation}
VLP=${VLP:-build/release/vlp}
STEPS=${DEMO_STEPS:-240}
SCORE_STEPS=${SCORE_STEPS:-80}
KEEP=${KEEP:-0.6}
BALANCE_T=${BALANCE_T:-300}
mkdir -p "$OUT"
[ -f data/emoji-train.tsv ] || "$VLP" data emoji --emoji-dir data/emoji --vendors google,apple,facebook --out data/emoji-train.tsv
[ -f data/emoji-twitter.tsv ] || "$VLP" data emoji --emoji-dir data/emoji --vendors twitter --out data/emoji-twitter.tsv
printf 'an emoji of {}\n' > "$OUT/templates.txt"
sh scripts/make-noisy.sh data/emoji-train.tsv "$OUT/noisy.tsv" 0.4 1

train() { # NAME DATA STEPS
    rm -rf "$OUT/$1"
    "$VLP" train --model-config tiny --out "$OUT/$1" --train-data "$2" --white-background \
        --alt-caption-key coarse --alt-caption-prob 0.1667 --steps "$3" --batch 128 --lr 1e-3 --warmup 20 \
        --save-every 1000 --threads 2 > "$OUT/$1.train.log" 2>&1
}
evaluate() { # NAME
    "$VLP" eval --model "$OUT/$1/latest.safetensors" --data data/emoji-twitter.tsv --label-key category \
        --templates "$OUT/templates.txt" --white-background --zeroshot --retrieval > "$OUT/$1.eval.log" 2>&1
}
rows() { echo $(($(wc -l < "$1") - 1)); }

# (c): the score model, then the filter
train score "$OUT/noisy.tsv" "$SCORE_STEPS"
"$VLP" data filter --data "$OUT/noisy.tsv" --out "$OUT/filtered.tsv" --model "$OUT/score/latest.safetensors" \
    --keep-fraction "$KEEP" --white-background 2> "$OUT/filter.log"
# (d): metadata = the subcategories and categories named in the coarse captions ("a X emoji of Y")
cut -f3 data/emoji-train.tsv | tail -n +2 | sed -n 's/^an\{0,1\} \(.*\) emoji of \(.*\)$/\1\n\2/p' | sort -u > "$OUT/metadata.txt"
"$VLP" data balance --data "$OUT/noisy.tsv" --metadata "$OUT/metadata.txt" --t "$BALANCE_T" \
    --out "$OUT/balanced.tsv" --counts "$OUT/balance-counts.tsv" 2> "$OUT/balance.log"

# the filter on the planted noise: noise is the positive class, "removed" the prediction
noisy_col=$(head -n 1 "$OUT/noisy.tsv" | tr '\t' '\n' | grep -n '^noisy$' | cut -d: -f1)
planted=$(awk -F'\t' -v c="$noisy_col" 'NR > 1 && $c == 1' "$OUT/noisy.tsv" | wc -l)
kept_noisy=$(awk -F'\t' -v c="$noisy_col" 'NR > 1 && $c == 1' "$OUT/filtered.tsv" | wc -l)
removed=$(($(rows "$OUT/noisy.tsv") - $(rows "$OUT/filtered.tsv")))
removed_noisy=$((planted - kept_noisy))
bal_noisy=$(awk -F'\t' -v c="$noisy_col" 'NR > 1 && $c == 1' "$OUT/balanced.tsv" | wc -l)

for run in clean:data/emoji-train.tsv noisy:$OUT/noisy.tsv filtered:$OUT/filtered.tsv balanced:$OUT/balanced.tsv; do
    name=${run%%:*} data=${run#*:}
    train "$name" "$data" "$STEPS"
    evaluate "$name"
done

echo "| pool | pairs | noisy share | i2t R@1 / R@10 | t2i R@1 / R@10 | zero-shot top-1 / balanced |"
echo "|---|--:|--:|--:|--:|--:|"
for name in clean noisy filtered balanced; do
    case $name in
        clean) data=data/emoji-train.tsv share=0 ;;
        noisy) data=$OUT/noisy.tsv share=$(awk "BEGIN { printf \"%.3f\", $planted / $(rows "$OUT/noisy.tsv") }") ;;
        filtered) data=$OUT/filtered.tsv share=$(awk "BEGIN { printf \"%.3f\", $kept_noisy / $(rows "$OUT/filtered.tsv") }") ;;
        balanced) data=$OUT/balanced.tsv share=$(awk "BEGIN { printf \"%.3f\", $bal_noisy / $(rows "$OUT/balanced.tsv") }") ;;
    esac
    r=$(grep '^RESULT name=retrieval' "$OUT/$name.eval.log" | head -1)
    z=$(grep '^RESULT name=zeroshot' "$OUT/$name.eval.log")
    val() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
    echo "| $name | $(rows "$data") | $share | $(val "$r" i2t_r1) / $(val "$r" i2t_r10) | $(val "$r" t2i_r1) / $(val "$r" t2i_r10) | $(val "$z" top1) / $(val "$z" balanced) |"
done
echo
echo "filter (top $KEEP by the score of a $SCORE_STEPS-step model on the noisy pool): removed $removed, of which $removed_noisy planted;" \
     "precision $(awk "BEGIN { printf \"%.3f\", $removed_noisy / ($removed > 0 ? $removed : 1) }")," \
     "recall $(awk "BEGIN { printf \"%.3f\", $removed_noisy / $planted }") ($planted planted)"
