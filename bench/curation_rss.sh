#!/bin/sh
# Peak memory of vlp data filter (rules and CLIP score) and vlp data balance
# against the pool's size: synthetic pools of N rows (the 32 small PNGs of
# tests/tools/make_pairs, captions numbered so each row differs) at each size
# given, through the same commands; prints a markdown table of peak RSS
# (GNU time) and wall time. The memory should not grow with N.
#   bench/curation_rss.sh [SIZES ("50000 200000")] [OUT (runs/curation-rss)]
set -eu
SIZES=${1:-"50000 200000"}
OUT=${2:-runs/curation-rss}
BUILD=${BUILD:-build/release}
VLP=${VLP:-$BUILD/vlp}
mkdir -p "$OUT/img"
make_pairs=$(cd "$BUILD/tests/tools" && pwd)/make_pairs
(cd "$OUT" && "$make_pairs" img 32 16 > base.tsv) # paths relative to the table
cat > "$OUT/small.json" <<'JSON'
{"embed_dim": 16, "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
 "text_cfg": {"context_length": 16, "vocab_size": 512, "width": 32, "layers": 1, "heads": 2}}
JSON
rm -rf "$OUT/model"
"$VLP" train --train-data "$OUT/base.tsv" --model-config "$OUT/small.json" --batch 8 --steps 2 --warmup 1 \
    --tokenizer-merges 40 --out "$OUT/model" --threads 2 > "$OUT/model.log" 2>&1
printf 'red\ngreen\nblue\nyellow\npurple\ncyan\nwhite\nblack\ntop left\nbottom right\n' > "$OUT/metadata.txt"
measure() { # LABEL CMD... -> "peak KiB  seconds"
    label=$1; shift
    /usr/bin/time -f '%M %e' -o "$OUT/time.txt" "$@" > "$OUT/$label.log" 2>&1
    cat "$OUT/time.txt"
}
echo "| pool rows | command | peak RSS (MiB) | wall (s) |"
echo "|--:|---|--:|--:|"
for n in $SIZES; do
    pool=$OUT/pool-$n.tsv
    # rows of the 32 images, captions numbered: "a red square at the top left, sample 123"
    awk -F'\t' -v n="$n" -v OFS='\t' 'NR == 1 { print; next } { r[NR - 1] = $0; m = NR - 1 }
        END { for (i = 0; i < n; i++) { split(r[i % m + 1], f, "\t"); print f[1], f[2] ", sample " i, f[3] } }' \
        "$OUT/base.tsv" > "$pool"
    for cmd in rules score balance; do
        case $cmd in
            rules) set -- "$VLP" data filter --data "$pool" --out "$OUT/rules-$n.tsv" --min-words 4 --min-side 8 ;;
            score) set -- "$VLP" data filter --data "$pool" --out "$OUT/score-$n.tsv" --keep-fraction 0.3 \
                       --model "$OUT/model/latest.safetensors" --threads 2 --encode-batch 256 ;;
            balance) set -- "$VLP" data balance --data "$pool" --metadata "$OUT/metadata.txt" --t $((n / 20)) \
                         --out "$OUT/balance-$n.tsv" ;;
        esac
        read -r kib secs <<EOF
$(measure "$cmd-$n" "$@")
EOF
        echo "| $n | $cmd | $(awk "BEGIN { printf \"%.1f\", $kib / 1024 }") | $secs |"
    done
done
