#!/bin/sh
# int8 against fp32 on the emoji corpus: the model make demo trains (or any
# given), quantized by `vlp quantize`, both evaluated on the held-out
# twitter images (retrieval, zero-shot over the 9 categories, as make demo's
# eval) with the same binary in the same run; prints a table, the eval wall
# times, and one RESULT line. Needs make demo's data and model.
#   bench/int8.sh [MODEL (runs/demo/latest.safetensors)] [OUT (runs/int8)]
set -eu
MODEL=${1:-runs/demo/latest.safetensors}
OUT=${2:-runs/int8}
VLP=${VLP:-build/release/vlp}
if [ ! -f "$MODEL" ] || [ ! -f data/emoji-twitter.tsv ]; then
    echo "bench/int8.sh: needs $MODEL and data/emoji-twitter.tsv (make demo)" >&2
    exit 1
fi
mkdir -p "$OUT"
printf 'an emoji of {}\n' > "$OUT/templates.txt"
"$VLP" quantize --model "$MODEL" --out "$OUT/model.int8.safetensors" --check 32 > "$OUT/quantize.log" 2>&1
vocab=$(dirname "$MODEL")/tokenizer.merges
[ -f "$vocab" ] && vocab_opt="--vocab $vocab" || vocab_opt=
now() { date +%s.%N; }
evaluate() { # NAME MODEL
    t0=$(now)
    # shellcheck disable=SC2086
    "$VLP" eval --model "$2" $vocab_opt --data data/emoji-twitter.tsv --label-key category \
        --templates "$OUT/templates.txt" --white-background --zeroshot --retrieval --threads 2 > "$OUT/$1.eval.log" 2>&1
    awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.1f\n", a - b }' > "$OUT/$1.seconds"
}
evaluate fp32 "$MODEL"
evaluate int8 "$OUT/model.int8.safetensors"
val() { grep "^RESULT name=$2" "$OUT/$1.eval.log" | head -1 | tr ' ' '\n' | sed -n "s/^$3=//p"; }
echo "| model | i2t R@1 / R@5 / R@10 | t2i R@1 / R@5 / R@10 | zero-shot top-1 / balanced | eval s |"
echo "|---|--:|--:|--:|--:|"
for p in fp32 int8; do
    echo "| $p | $(val $p retrieval i2t_r1) / $(val $p retrieval i2t_r5) / $(val $p retrieval i2t_r10)" \
         "| $(val $p retrieval t2i_r1) / $(val $p retrieval t2i_r5) / $(val $p retrieval t2i_r10)" \
         "| $(val $p zeroshot top1) / $(val $p zeroshot balanced) | $(cat "$OUT/$p.seconds") |"
done
grep '^int8 vs fp32' "$OUT/quantize.log"
cos=$(sed -n 's/^int8 vs fp32 embedding cosine, 32 random images: mean [0-9.]*, min \([0-9.]*\)$/\1/p' "$OUT/quantize.log")
echo "RESULT name=emoji-int8-eval i2t_r5_fp32=$(val fp32 retrieval i2t_r5) i2t_r5_int8=$(val int8 retrieval i2t_r5)" \
     "t2i_r5_fp32=$(val fp32 retrieval t2i_r5) t2i_r5_int8=$(val int8 retrieval t2i_r5)" \
     "zeroshot_balanced_fp32=$(val fp32 zeroshot balanced) zeroshot_balanced_int8=$(val int8 zeroshot balanced)" \
     "image_cos_min=$cos"
