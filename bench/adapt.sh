#!/bin/sh
# The few-shot experiment of docs/adapt.md on the emoji corpus: a `tiny` CLIP
# trained by vlp for the demo's budget (240 steps of batch 128 on the
# google/apple/facebook images, as bench/curation.sh's clean run), then
# adapted to the 9 emoji categories from SHOTS images a category of those
# training vendors and evaluated on the held-out twitter images (top-1 and
# class-balanced accuracy):
#   zero-shot (the template "an emoji of {}"), linear probe, CoOp, CoCoOp,
#   MaPLe at 1, 4 and 16 shots, seeds 1-3: mean ± sample standard deviation;
#   base-to-new (CoCoOp's protocol): learnt on the first 5 categories (16
#   shots), tested on those 5 and on the other 4, each as its own task, with
#   the harmonic mean of the two.
# Needs make demo's data (scripts/get-data.sh data/emoji) and the release
# build. Prints markdown tables; the runs go to $OUT.
#   bench/adapt.sh [OUT (runs/adapt)]
#   MODEL=runs/curation/clean/latest.safetensors bench/adapt.sh   (reuse a model)
#   TABLES=1 bench/adapt.sh runs/adapt    (the tables again from a finished run's files)
set -eu
OUT=${1:-runs/adapt}
VLP=${VLP:-build/release/vlp}
SHOTS=${SHOTS:-1 4 16}
SEEDS=${SEEDS:-1 2 3}
METHODS=${METHODS:-linear-probe coop cocoop maple}
mkdir -p "$OUT"
[ -f data/emoji-train.tsv ] || "$VLP" data emoji --emoji-dir data/emoji --vendors google,apple,facebook --out data/emoji-train.tsv
[ -f data/emoji-twitter.tsv ] || "$VLP" data emoji --emoji-dir data/emoji --vendors twitter --out data/emoji-twitter.tsv
printf 'an emoji of {}\n' > "$OUT/templates.txt"
if [ -z "${MODEL:-}" ] && [ -z "${TABLES:-}" ]; then
    MODEL=$OUT/base/latest.safetensors
    [ -f "$MODEL" ] || "$VLP" train --model-config tiny --out "$OUT/base" --train-data data/emoji-train.tsv \
        --white-background --alt-caption-key coarse --alt-caption-prob 0.1667 --steps 240 --batch 128 --lr 1e-3 \
        --warmup 20 --save-every 1000 --threads 2 > "$OUT/base.train.log" 2>&1
fi
common="--model ${MODEL:-} --white-background --threads 2"
tail -n +2 data/emoji-train.tsv | cut -f4 | grep -v '^$' | sort -u > "$OUT/classes.txt"
head -n 5 "$OUT/classes.txt" > "$OUT/base.txt"
tail -n +6 "$OUT/classes.txt" > "$OUT/new.txt"

evaluate() { # LOG [eval options]: top-1 and balanced of its RESULT line
    log=$1
    shift
    "$VLP" eval $common --data data/emoji-twitter.tsv --label-key category --zeroshot "$@" > "$log" 2>&1
    grep '^RESULT name=zeroshot' "$log" | tr ' ' '\n' | sed -n 's/^\(top1\|balanced\)=//p' | tr '\n' ' '
}
# mean ± sample std of each column of "a b" lines
stats() { awk '{ for (i = 1; i <= NF; i++) { s[i] += $i; q[i] += $i * $i } n++ }
    END { for (i = 1; i <= 2; i++) { m = s[i] / n; v = n > 1 ? (q[i] - n * m * m) / (n - 1) : 0;
          printf "%s%.3f ± %.3f", (i > 1 ? " | " : ""), m, sqrt(v > 0 ? v : 0) } }'; }

# TABLES=1: no runs, only the tables from the files
[ -n "${TABLES:-}" ] || "$VLP" eval $common --data data/emoji-twitter.tsv --label-key category --zeroshot \
    --templates "$OUT/templates.txt" > "$OUT/zeroshot.log" 2>&1
zs=$(grep '^RESULT name=zeroshot' "$OUT/zeroshot.log" | tr ' ' '\n' | sed -n 's/^\(top1\|balanced\)=//p' | tr '\n' ' ')
echo "| method | shots | top-1 | class-balanced | seconds to learn (mean) |"
echo "|---|--:|--:|--:|--:|"
echo "| zero-shot (template) | 0 | $(echo "$zs" | awk '{ printf "%.3f", $1 }') | $(echo "$zs" | awk '{ printf "%.3f", $2 }') | 0 |"
for m in $METHODS; do
    for k in $SHOTS; do
        if [ -z "${TABLES:-}" ]; then
            : > "$OUT/$m-$k.txt"
            : > "$OUT/$m-$k.time"
            for s in $SEEDS; do
                name=$m-$k-s$s
                "$VLP" adapt --method "$m" $common --data data/emoji-train.tsv --label-key category --shots "$k" \
                    --seed "$s" --out "$OUT/$name.safetensors" > "$OUT/$name.log" 2>&1
                sed -n 's/^wrote .* in \([0-9.]*\) s$/\1/p' "$OUT/$name.log" >> "$OUT/$m-$k.time"
                evaluate "$OUT/$name.eval.log" --prompts "$OUT/$name.safetensors" >> "$OUT/$m-$k.txt"
                echo >> "$OUT/$m-$k.txt"
            done
        fi
        echo "| $m | $k | $(stats < "$OUT/$m-$k.txt") | $(awk '{ s += $1; n++ } END { printf "%.0f", s / n }' "$OUT/$m-$k.time") |"
    done
done

echo
echo "base-to-new: learnt on $(tr '\n' ',' < "$OUT/base.txt" | sed 's/,$//') (16 shots); new: $(tr '\n' ',' < "$OUT/new.txt" | sed 's/,$//')"
echo
echo "| method | base top-1 | base balanced | new top-1 | new balanced | H (balanced) |"
echo "|---|--:|--:|--:|--:|--:|"
if [ -z "${TABLES:-}" ]; then
    b=$(evaluate "$OUT/b2n-zs-base.log" --templates "$OUT/templates.txt" --classes "$OUT/base.txt")
    n=$(evaluate "$OUT/b2n-zs-new.log" --templates "$OUT/templates.txt" --classes "$OUT/new.txt")
    echo "$b $n" > "$OUT/b2n-zs.txt"
fi
awk '{ printf "| zero-shot (template) | %.3f | %.3f | %.3f | %.3f | %.3f |\n", $1, $2, $3, $4, 2 * $2 * $4 / ($2 + $4) }' "$OUT/b2n-zs.txt"
for m in coop cocoop maple; do
    if [ -z "${TABLES:-}" ]; then
        : > "$OUT/b2n-$m.txt"
        for s in $SEEDS; do
            name=b2n-$m-s$s
            "$VLP" adapt --method "$m" $common --data data/emoji-train.tsv --label-key category --classes "$OUT/base.txt" \
                --shots 16 --seed "$s" --out "$OUT/$name.safetensors" > "$OUT/$name.log" 2>&1
            b=$(evaluate "$OUT/$name.base.log" --prompts "$OUT/$name.safetensors" --classes "$OUT/base.txt")
            n=$(evaluate "$OUT/$name.new.log" --prompts "$OUT/$name.safetensors" --classes "$OUT/new.txt")
            echo "$b $n" >> "$OUT/b2n-$m.txt"
        done
    fi
    awk -v m="$m" '{ for (i = 1; i <= 4; i++) { s[i] += $i; q[i] += $i * $i } h += 2 * $2 * $4 / ($2 + $4); hq += (2 * $2 * $4 / ($2 + $4)) ^ 2; n++ }
        END { printf "| %s |", m; for (i = 1; i <= 4; i++) { mu = s[i] / n; v = (q[i] - n * mu * mu) / (n - 1);
              printf " %.3f ± %.3f |", mu, sqrt(v > 0 ? v : 0) }
              mu = h / n; v = (hq - n * mu * mu) / (n - 1); printf " %.3f ± %.3f |\n", mu, sqrt(v > 0 ? v : 0) }' "$OUT/b2n-$m.txt"
done
