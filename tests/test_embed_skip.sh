#!/bin/sh
# A list of 1,000 images with 10 bad ones (missing, empty, cut short, not an
# image, a directory, ...) embeds the 990, names each of the 10, writes the
# path of every row beside the .npy, says so in its summary and exits 3;
# --on-error stop stops at the first with exit 1 and writes nothing. vlp eval
# on a set with bad images and vlp adapt with a bad shot: the same rule;
# vlp data filter and dedup count such images as removed, or stop (issue 32).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
. "$root/tests/tap.sh"
vlp=$here/../vlp
ref=$root/tests/ref
tap_tmpdir embed-skip
cd "$tmp" || exit 1
export VLP_PROGRESS_SECONDS=0 OMP_NUM_THREADS=2
model="--model $ref/api_model.safetensors --vocab $ref/api_merges.txt --threads 2"

mkdir img
"$here/tools/make_pairs" img 40 > pairs.tsv
# 990 good lines: the 40 images over and over; 10 bad ones spread among them
cut -f1 pairs.tsv | tail -n +2 > good.txt
: > empty.png
head -c 100 img/img000.png > cut.png
printf 'not an image' > text.png
printf 'GIF89a\001\000\001\000' > tiny.gif
mkdir adir.png
awk -v bad="missing.png empty.png cut.png text.png tiny.gif adir.png missing2.jpg empty.png cut.png text.png" '
    BEGIN { n = split(bad, b, " ") }
    { g[NR] = $0 }
    END { k = 0; for (i = 0; i < 1000; i++) { if (i % 100 == 50) print b[++k]; else print g[i % NR + 1] } }' good.txt > list.txt
tap_if "the list: 1000 lines, 10 bad" list.txt [ "$(wc -l < list.txt)" = 1000 ]

"$vlp" embed $model --images list.txt --out e.npy > skip.log 2>&1
tap_if "exit 3: done, with images skipped" skip.log [ $? = 3 ]
tap_if "990 rows in the .npy" skip.log sh -c "head -c 128 e.npy | grep -aq \"'shape': (990, \""
tap_if "990 paths beside it, in the rows' order" skip.log \
    sh -c "[ \$(wc -l < e.paths.txt) = 990 ] && ! grep -q 'missing\|empty\|cut\|text\|tiny\|adir' e.paths.txt && [ \"\$(head -1 e.paths.txt)\" = img/img000.png ]"
tap_if "each of the 10 named" skip.log [ "$(grep -c '^vlp embed: skipped: ' skip.log)" = 10 ]
tap_grep "the missing file, with why" skip.log "missing.png: No such file or directory"
tap_grep "the empty file" skip.log "empty.png: an empty file (0 bytes), not an image"
tap_grep "the summary line" skip.log "embedded 990 of 1000 images; skipped 10 that could not be read"
# the rows are the good images' embeddings: row 50 (after the first bad line) is image 50's
"$vlp" embed $model --images good.txt --out g.npy > good.log 2>&1
tap_if "a clean list: exit 0, 40 rows" good.log sh -c "head -c 128 g.npy | grep -aq \"'shape': (40, \""
tap_if "the skipping run's first 40 rows are the 40 images' own embeddings" skip.log \
    sh -c "cmp -s -i 128:128 -n 2560 e.npy g.npy"

"$vlp" embed $model --images list.txt --out s.npy --on-error stop > stop.log 2>&1
tap_if "--on-error stop: exit 1" stop.log [ $? = 1 ]
tap_grep "the first bad one named" stop.log "missing.png: No such file or directory (--on-error stop)"
tap_if "nothing written" stop.log [ ! -e s.npy -a ! -e s.paths.txt ]
"$vlp" embed $model --images list.txt --out s.npy --on-error maybe > odd.log 2>&1
tap_if "--on-error maybe: exit 2" odd.log [ $? = 2 ]
tap_grep "and why" odd.log "--on-error takes skip or stop, not 'maybe'"
# vlp eval: two rows of the set whose images do not decode
{ head -n 1 pairs.tsv; tail -n +2 pairs.tsv | sed -e '3s|^[^	]*|text.png|' -e '7s|^[^	]*|cut.png|'; } > set.tsv
"$vlp" eval $model --data set.tsv --label-key colour > eval.log 2>&1
tap_if "eval: exit 3, the results of the 38" eval.log [ $? = 3 ]
tap_grep "eval: the results printed" eval.log "RESULT name=zeroshot"
tap_grep "eval: the count and the first named" eval.log "evaluated 38 images; skipped 2 that could not be decoded; the first: "
"$vlp" eval $model --data set.tsv --label-key colour --on-error stop > evalstop.log 2>&1
tap_if "eval --on-error stop: exit 1, no results" evalstop.log sh -c "[ $? = 1 ] && ! grep -q RESULT evalstop.log"
tap_grep "eval --on-error stop: named" evalstop.log "text.png): not a JPEG, PNG, WebP, GIF, TIFF or BMP image"
# vlp adapt: a drawn shot that does not decode is dropped, named, counted
mkdir -p cls/red cls/blue
for i in 0 1 2; do cp img/img00$i.png cls/red/r$i.png; cp img/img01$i.png cls/blue/b$i.png; done
cp text.png cls/red/zz.png
"$vlp" adapt --method linear-probe $model --data cls --shots 4 --out probe.safetensors > adapt.log 2>&1
tap_if "adapt: exit 3, the probe written from the shots that decode" adapt.log [ $? = 3 -a -s probe.safetensors ]
tap_grep "adapt: the bad shot named" adapt.log "vlp adapt: skipped: "
tap_grep "adapt: counted" adapt.log "skipped 1 drawn images that could not be decoded"
"$vlp" adapt --method linear-probe $model --data cls --shots 4 --out probe2.safetensors --on-error stop > adaptstop.log 2>&1
tap_if "adapt --on-error stop: exit 1, no file" adaptstop.log [ $? = 1 -a ! -e probe2.safetensors ]
# vlp data filter and dedup: counted as removed by default; --on-error stop ends the run, nothing written
"$vlp" data filter --data set.tsv --out f/kept.tsv > filter.log 2>&1
tap_if "filter: exit 0, 38 kept, 2 counted undecodable" filter.log \
    sh -c "[ $? = 0 ] && grep -q '\"undecodable\": 2' f/kept.tsv.report.json"
"$vlp" data filter --data set.tsv --out f2/kept.tsv --on-error stop > filterstop.log 2>&1
tap_if "filter --on-error stop: exit 1, nothing written" filterstop.log [ $? = 1 -a ! -e f2/kept.tsv -a ! -e f2 ]
tap_grep "filter --on-error stop: named" filterstop.log "text.png): not a JPEG, PNG, WebP, GIF, TIFF or BMP image"
"$vlp" data dedup --data set.tsv --out d2/kept.tsv $model --on-error stop > dedupstop.log 2>&1
tap_if "dedup --on-error stop: exit 1, nothing written" dedupstop.log [ $? = 1 -a ! -e d2/kept.tsv ]
tap_end
