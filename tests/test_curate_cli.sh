#!/bin/sh
# vlp data filter and balance as a user runs them, on 32 small PNG pairs (8
# colours x 4 corners): the rules' and the score's thresholds are exact; the
# scores are the cosines `vlp embed` gives; balancing keeps min(c, t) where it
# must; shards written by them train; a pool of broken samples is reported and
# skipped, never a crash (the build's own vlp, so under ASan too).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
. "$root/tests/tap.sh"
vlp=$here/../vlp
tap_tmpdir curate-cli
cd "$tmp" || exit 1
export VLP_PROGRESS_SECONDS=0 OMP_NUM_THREADS=2

mkdir img small
"$here/tools/make_pairs" img 32 > pairs.tsv
"$here/tools/make_pairs" small 8 16 > small.tsv
cat > small.json <<'JSON'
{"embed_dim": 16, "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
 "text_cfg": {"context_length": 16, "vocab_size": 512, "width": 32, "layers": 1, "heads": 2}}
JSON
"$vlp" train --train-data pairs.tsv --model-config small.json --batch 8 --steps 4 --warmup 1 \
    --tokenizer-merges 40 --out run --threads 2 --workers 1 > train.log 2>&1 || tap_not_ok "the score model" train.log
# rows of a table, header not counted
rows() { echo $(($(wc -l < "$1") - 1)); }
# the floats of a (N, 1) .npy, one a line (the header is 128 bytes for these)
npy_values() { od -A n -v -t f4 -j 128 -w4 "$1" | tr -d ' '; }

# the rules: 4 rows of 3-word captions added to the 32 of 7 words
{ cat pairs.tsv; for i in 0 1 2 3; do printf 'img/img00%d.png\ta red square\tred\n' $i; done; } > words.tsv
tap_check "filter by caption words" words.log "$vlp" data filter --data words.tsv --out w/kept.tsv --min-words 4
tap_if "--min-words 4 keeps the 32 seven-word captions" words.log [ "$(rows w/kept.tsv)" = 32 ]
tap_if "the report counts the 4 against the rule" words.log grep -q '"min_words": 4' w/kept.tsv.report.json
tap_if "the output's image paths resolve from its own directory" words.log \
    grep -q "^$tmp/img/img008.png	a red square at the top right	red\$" w/kept.tsv
cat pairs.tsv > mixed.tsv && tail -n +2 small.tsv >> mixed.tsv
tap_check "filter by image side" side.log "$vlp" data filter --data mixed.tsv --out mixed-kept.tsv --min-side 20
tap_if "--min-side 20 drops the 8 16-pixel images, keeps the 32 others, paths unchanged beside the input" side.log \
    [ "$(rows mixed-kept.tsv)" = 32 -a "$(grep -c '^img/' mixed-kept.tsv)" = 32 ]

# the CLIP score
tap_check "filter: keep the top 30% by score" frac.log "$vlp" data filter --data pairs.tsv --out f/top.tsv \
    --model run/latest.safetensors --keep-fraction 0.3 --scores f/scores.npy
tap_if "--keep-fraction 0.3 of 32 keeps exactly 10" frac.log [ "$(rows f/top.tsv)" = 10 ]
tail -n +2 pairs.tsv | cut -f1 > images.txt
tail -n +2 pairs.tsv | cut -f2 > captions.txt
"$vlp" embed --model run/latest.safetensors --images images.txt --out ie.npy > embed.log 2>&1
"$vlp" embed --model run/latest.safetensors --texts captions.txt --out te.npy >> embed.log 2>&1
# the cosine of vlp embed's image and text rows against the scores file
od -A n -v -t f4 -j 128 -w64 ie.npy > ie.txt
od -A n -v -t f4 -j 128 -w64 te.npy > te.txt
npy_values f/scores.npy > scores.txt
worst=$(paste -d' ' ie.txt te.txt scores.txt | awk '{ d = 0; for (k = 1; k <= 16; k++) d += $k * $(k + 16);
    e = d - $33; if (e < 0) e = -e; if (e > m) m = e } END { printf "%.9f", m }')
tap_if "the scores are vlp embed's cosines (within 1e-6; worst $worst)" embed.log \
    awk -v w="$worst" 'BEGIN { exit !(w < 1e-6) }'
tap_if "the scores' keys name each sample in pool order" frac.log \
    [ "$(sed -n 3p f/scores.npy.keys.txt)" = "pairs.tsv:4 (img/img002.png)" ]
thr=$(sort -g -r scores.txt | sed -n 10p)
tap_check "filter: keep scores >= the 10th best" min.log "$vlp" data filter --data pairs.tsv --out f/min.tsv \
    --model run/latest.safetensors --min-score "$thr"
tap_if "--min-score keeps exactly the samples at or above it (10)" min.log [ "$(rows f/min.tsv)" = 10 ]
tap_if "and they are those --keep-fraction kept" min.log cmp -s f/min.tsv f/top.tsv

# balancing
printf 'red\ngreen\ntop left\nsquare\nmagenta\n' > meta.txt
tap_check "balance with t = 3" bal.log "$vlp" data balance --data pairs.tsv --metadata meta.txt --out b/bal.tsv \
    --t 3 --counts b/counts.tsv --seed 1
tap_if "red and green (4 samples each, c > t) drop to about t; magenta unmatched" bal.log \
    grep -q '^magenta	0	0$' b/counts.tsv
tap_if "square, in every caption (c = 32 > 3): kept samples are those some entry kept" bal.log \
    [ "$(awk -F'\t' '$1 == "square" { print $2 }' b/counts.tsv)" = 32 -a \
      "$(awk -F'\t' '$1 == "square" { print $3 }' b/counts.tsv)" = "$(rows b/bal.tsv)" ]
tap_check "balance with t = 100: every matched sample kept" all.log "$vlp" data balance --data pairs.tsv \
    --metadata meta.txt --out b/all.tsv --t 100
tap_if "t above every count keeps the pool (32)" all.log [ "$(rows b/all.tsv)" = 32 ]
printf 'purple\n' > purple.txt
tap_check "balance: unmatched samples" un.log "$vlp" data balance --data pairs.tsv --metadata purple.txt \
    --out b/purple.tsv --t 100
tap_if "samples matching no entry are dropped (MetaCLIP): 4 purple kept" un.log [ "$(rows b/purple.tsv)" = 4 ]
tap_if "the report gives the unmatched share" un.log grep -q '"unmatched_share": 0.875' b/purple.tsv.report.json
"$vlp" data balance --data pairs.tsv --metadata purple.txt --out b/keep.tsv --t 100 --keep-unmatched > keep.log 2>&1
tap_if "--keep-unmatched keeps them" keep.log [ "$(rows b/keep.tsv)" = 32 ]
"$vlp" data balance --data pairs.tsv --metadata meta.txt --out b/again.tsv --t 3 --seed 1 > again.log 2>&1
tap_if "the same seed keeps the same samples" again.log cmp -s b/again.tsv b/bal.tsv

# shards out, shards in, and the trainer reads them
tap_check "balance into shards" sh.log "$vlp" data balance --data words.tsv --metadata meta.txt --out sh/s \
    --t 100 --samples-per-shard 10
tap_if "36 samples in 4 shards of 10" sh.log [ -f sh/s-00003.tar -a ! -f sh/s-00004.tar ]
tap_check "filter shards into shards" shf.log "$vlp" data filter --data 'sh/s-{00000..00003}.tar' --out sh2/t \
    --min-words 4 --samples-per-shard 100
tap_if "the 32 long-caption samples, members as they were" shf.log \
    [ "$(tar tf sh2/t-00000.tar | grep -c json)" = 32 -a "$(tar tf sh2/t-00000.tar | grep -c png)" = 32 ]
tap_check "the trainer reads the filtered shards" shtrain.log "$vlp" train --train-data 'sh2/t-00000.tar' \
    --model-config small.json --batch 4 --steps 2 --warmup 1 --tokenizer-merges 20 --out shrun --threads 2 --workers 1
"$vlp" data filter --data 'sh/s-00000.tar' --out no.tsv > no.log 2>&1
tap_if "a table cannot be written from shards, and it says why" no.log \
    grep -q "a table can be written from a table only" no.log

# dedup: 3 byte-identical copies and 3 pixel-identical ones (bytes appended
# after the PNG's end: other bytes, the same image)
for i in 0 1 2; do { cat img/img00$i.png; printf 'trailing'; } > img/near00$i.png; done
{ cat pairs.tsv; for i in 0 1 2; do printf 'img/img00%d.png\tcopy %d\tred\n' $i $i;
  printf 'img/near00%d.png\tnear %d\tred\n' $i $i; done; } > dups.tsv
tap_check "dedup: exact duplicates" exact.log "$vlp" data dedup --data dups.tsv --out d/exact.tsv
tap_if "the 3 byte-identical copies go, the first of each stays" exact.log \
    [ "$(rows d/exact.tsv)" = 35 -a "$(grep -c copy d/exact.tsv)" = 0 -a "$(grep -c '"exact_duplicates": 3' d/exact.tsv.report.json)" = 1 ]
tap_check "dedup: SemDeDup with a model" sem.log "$vlp" data dedup --data dups.tsv --out d/sem.tsv \
    --model run/latest.safetensors --dedup-eps 0.00001 --clusters 2
tap_if "the 3 pixel-identical copies go too (nothing else): 32 kept, the originals" sem.log \
    [ "$(rows d/sem.tsv)" = 32 -a "$(grep -c near d/sem.tsv)" = 0 ]
tap_if "they go as pixel duplicates (the decoded pixels' hash, whatever the CPU), before SemDeDup" sem.log \
    grep -q '"pixel_duplicates": 3' d/sem.tsv.report.json
tap_if "the report gives the clusters and the removals per eps" sem.log \
    grep -q '"clusters": 2' d/sem.tsv.report.json
# the "removed" lines: at --dedup-eps, then at each of the 6 --report-eps, then the total
tap_if "removals grow with eps" sem.log awk '/"removed": / { gsub(/[^0-9]/, ""); v[n++] = $0 }
    END { for (i = 2; i < 7; i++) if (v[i] + 0 < v[i - 1] + 0) exit 1; exit n != 8 }' d/sem.tsv.report.json

# concepts: frequencies in the captions (whole words, any case), joined with
# vlp eval's per-class accuracy
{ cat pairs.tsv; for i in 1 2 3 4 5 6; do printf 'img/img000.png\ta RED thing\tred\n'; done;
  printf 'img/img001.png\tgreenish, not green\tgreen\n'; } > skew.tsv
tap_check "eval writes per-class accuracy" pc.log "$vlp" eval --model run/latest.safetensors --data pairs.tsv \
    --label-key colour --zeroshot --per-class-json pc.json
tap_if "8 classes with images and correct counts" pc.log \
    [ "$(grep -c '"class"' pc.json)" = 8 -a "$(grep -c '"images": 4' pc.json)" = 8 ]
tap_check "concepts joined with the per-class accuracy" conc.log "$vlp" data concepts --data skew.tsv \
    --class-accuracy pc.json --out conc.tsv --plot conc.png
tap_if "red occurs in 4 + 6 captions (case folded), green in 4 + 1 (not 'greenish'), purple in 4" conc.log \
    [ "$(awk -F'\t' '$1 == "red" { print $2 }' conc.tsv)" = 10 -a "$(awk -F'\t' '$1 == "green" { print $2 }' conc.tsv)" = 5 \
      -a "$(awk -F'\t' '$1 == "purple" { print $2 }' conc.tsv)" = 4 ]
tap_if "the table is sorted by frequency, red first" conc.log [ "$(sed -n 2p conc.tsv | cut -f1)" = red ]
tap_grep "the fit is reported" conc.log "RESULT name=concepts concepts=8 fitted=8 slope="
tap_if "the plot is a PNG" conc.log [ "$(head -c 4 conc.png | od -A n -t x1 | tr -d ' ')" = 89504e47 ]
printf 'red\nRED\n' > rc.txt
"$vlp" data concepts --data skew.tsv --concepts rc.txt --case-sensitive --out rc.tsv > rc.log 2>&1
tap_if "--case-sensitive counts 'red' and 'RED' apart" rc.log \
    [ "$(awk -F'\t' '$1 == "red" { print $2 }' rc.tsv)" = 4 -a "$(awk -F'\t' '$1 == "RED" { print $2 }' rc.tsv)" = 6 ]

# a pool of broken samples: a missing file, an empty caption, a short row, a
# garbage image, an empty image, a CSV with quotes
printf 'not an image at all' > img/garbage.png
: > img/empty.png
{ cat pairs.tsv; printf 'img/missing.png\ta caption\tred\n'; printf 'img/img000.png\t \tred\n';
  printf 'img/img001.png\tshort row\n'; printf 'img/garbage.png\ta garbage square\tred\n';
  printf 'img/empty.png\tan empty square\tred\n'; } > broken.tsv
tap_check "filter a broken pool" broken.log "$vlp" data filter --data broken.tsv --out broken-kept.tsv \
    --model run/latest.safetensors --keep-fraction 1
tap_if "three rows skipped, two images undecodable, the 32 good ones kept" broken.log \
    [ "$(rows broken-kept.tsv)" = 32 -a "$(grep -c '"skipped": 3' broken-kept.tsv.report.json)" = 1 -a \
      "$(grep -c '"undecodable": 2' broken-kept.tsv.report.json)" = 1 ]
tap_grep "the first skipped row is named" broken.log "broken.tsv:34 (img/missing.png)"
tap_check "balance a broken pool" broken-bal.log "$vlp" data balance --data broken.tsv --metadata meta.txt \
    --out broken-bal.tsv --t 100
tap_if "balance keeps the two rows whose images it does not read" broken-bal.log [ "$(rows broken-bal.tsv)" = 34 ]
tap_check "dedup a broken pool" broken-dd.log "$vlp" data dedup --data broken.tsv --out broken-dd.tsv \
    --model run/latest.safetensors
tap_if "dedup counts the two undecodable images and drops them" broken-dd.log \
    grep -q '"undecodable": 2' broken-dd.tsv.report.json
tap_check "concepts over a broken pool" broken-conc.log "$vlp" data concepts --data broken.tsv --concepts meta.txt \
    --out broken-conc.tsv
tap_grep "the unusable rows are counted (a missing image too, though images are not read)" broken-conc.log \
    "skipped 3 unusable samples; the first: broken.tsv:34 (img/missing.png): cannot open"
# a shard whose captions are txt members, one empty, one with a key of 120 bytes
mkdir txt && long=$(printf 'k%.0s' $(seq 1 120))
cp img/img000.png txt/a.png && printf 'a red square' > txt/a.txt
cp img/img001.png txt/b.png && : > txt/b.txt
cp img/img002.png "txt/$long.png" && printf 'a blue square' > "txt/$long.txt"
(cd txt && tar --format=gnu -cf ../txt.tar a.png a.txt b.png b.txt "$long.png" "$long.txt")
tap_check "filter a shard of txt captions and a long key" txt.log "$vlp" data filter --data txt.tar --out txtout/t \
    --min-words 1
tap_if "two samples kept (the empty caption skipped), each key led by its output index, the long one the index alone" \
    txt.log [ "$(tar tf txtout/t-00000.tar | tr '\n' ' ')" = "000000000_a.png 000000000_a.txt 000000001.png 000000001.txt " ]
tap_if "the txt caption written back as it was" txt.log [ "$(tar xOf txtout/t-00000.tar 000000000_a.txt)" = "a red square" ]
cp sh/s-00001.tar cut.tar && truncate -s 3000 cut.tar
tap_check "filter a shard cut short" cut.log "$vlp" data filter --data cut.tar --out cutout/c --min-words 1
tap_if "the samples before the cut are kept, the cut named" cut.log \
    [ "$(tar tf cutout/c-00000.tar | grep -c json)" -ge 1 ] && grep -q "cut.tar" cut.log
{ echo 'filepath,title'; echo 'img/img000.png,"a red square, quoted ""here"""'; } > q.csv
tap_check "a CSV with quotes round-trips" csv.log "$vlp" data filter --data q.csv --out csv/q.csv
tap_if "its quoted field written back quoted" csv.log grep -q '"a red square, quoted ""here"""' csv/q.csv
"$vlp" data filter --data pairs.tsv --out x.tsv --keep-fraction 0.5 > refuse.log 2>&1
tap_if "a score rule without a score model is refused" refuse.log \
    [ $? = 2 -a "$(grep -c 'need --model' refuse.log)" -ge 1 ]
printf '\n\n' > empty.txt
"$vlp" data balance --data pairs.tsv --metadata empty.txt --out x.tsv > empty.log 2>&1
tap_if "metadata without an entry is refused, the file named" empty.log \
    [ $? = 1 -a "$(grep -c 'empty.txt: no entries' empty.log)" -ge 1 ]
# a folder is not a pool: said so, not read as a shard list
mkdir -p classes/red
"$vlp" data filter --data classes --out nofolder.tsv > folder.log 2>&1
tap_if "a folder as the pool: exit 1, what a pool is said, nothing written" folder.log \
    [ $? = 1 -a "$(grep -c 'classes is a folder: a pool to curate is a .tsv/.csv table or WebDataset shards' folder.log)" = 1 -a ! -e nofolder.tsv ]
# Ctrl-C in the middle of the work: the command stops (exit 130), removes
# every temporary file and what it had written, and leaves an older output as
# it was. The pool's second image is a FIFO, so the command is held in its
# first pass with its temporary files open until the signal has come.
mkfifo hold.png
{ head -n 2 pairs.tsv; printf 'hold.png\tthe held sample\tred\n'; tail -n +3 pairs.tsv; } > held.tsv
interrupt() { # NAME WAIT_FOR_GLOB OUTDIR ARGS...: runs vlp ARGS, Ctrl-C once WAIT_FOR_GLOB exists
    name=$1 glob=$2 dir=$3; shift 3
    mkdir -p "$dir" && echo "old output" > "$dir/old.txt"
    "$vlp" "$@" > "$name.log" 2>&1 &
    pid=$!
    n=0
    while [ -z "$(eval "ls $dir/$glob 2>/dev/null")" ] && [ $n -lt 600 ] && kill -0 $pid 2>/dev/null; do
        sleep 0.05; n=$((n + 1))
    done
    ls "$dir" > "$name.during"
    kill -INT $pid
    timeout 5 sh -c 'printf x > hold.png' 2>/dev/null # lets a read held in the FIFO go on
    wait $pid
    echo "exit $?" >> "$name.log"
    ls "$dir" > "$name.after"
}
interrupt ifilter "'*.tmp.'*" if data filter --data held.tsv --out if/kept.tsv --model run/latest.safetensors
tap_if "filter: its temporary files were there when Ctrl-C came" ifilter.during grep -q 'kept.tsv.scores.tmp' ifilter.during
tap_grep "filter: Ctrl-C exits 130 and says so" ifilter.log "vlp data filter: interrupted; nothing written"
tap_grep "filter: exit 130" ifilter.log "exit 130"
tap_if "filter: nothing left but the older file" ifilter.after [ "$(cat ifilter.after)" = old.txt ]
rm -rf fresh
"$vlp" data filter --data held.tsv --out fresh/kept.tsv --model run/latest.safetensors > ifresh.log 2>&1 &
pid=$!
n=0; while [ -z "$(ls fresh/*.tmp.* 2>/dev/null)" ] && [ $n -lt 600 ] && kill -0 $pid 2>/dev/null; do sleep 0.05; n=$((n + 1)); done
kill -INT $pid; timeout 5 sh -c 'printf x > hold.png' 2>/dev/null; wait $pid
tap_if "filter into a directory it made: Ctrl-C takes the directory away too" ifresh.log [ $? = 130 -a ! -e fresh ]
interrupt idedup "'*.dedup-embeddings.'*" id data dedup --data held.tsv --out id/u.tsv --model run/latest.safetensors
tap_if "dedup: its temporary files were there when Ctrl-C came" idedup.during grep -q 'u.tsv.dedup-status' idedup.during
tap_grep "dedup: exit 130" idedup.log "exit 130"
tap_if "dedup: nothing left but the older file" idedup.after [ "$(cat idedup.after)" = old.txt ]
interrupt ishards "p-00000.tar" is data shards --data held.tsv --out is/p --samples-per-shard 1 --keep-order
tap_if "shards: a shard was written when Ctrl-C came" ishards.during grep -q "^p-00000.tar$" ishards.during
tap_grep "shards: Ctrl-C exits 130 and says so" ishards.log "vlp data shards: interrupted; nothing written"
tap_if "shards: the finished shard is taken away too" ishards.after [ "$(cat ishards.after)" = old.txt ]
rm -f hold.png
# two input shards that both number their samples from 000000000: every kept
# sample keeps its own key in the output (issue 31: side by side they were read as one)
head -n 3 pairs.tsv > two-a.tsv && { head -n 1 pairs.tsv; sed -n 4,5p pairs.tsv; } > two-b.tsv
"$vlp" data shards --data two-a.tsv --out twoa/s --keep-order > /dev/null 2>&1
"$vlp" data shards --data two-b.tsv --out twob/s --keep-order > /dev/null 2>&1
tap_check "filter two shards whose keys repeat" twokeys.log "$vlp" data filter --data 'twoa/s-00000.tar::twob/s-00000.tar' \
    --out twokept/s --min-words 1
tap_check "the output read back" twostats.log "$vlp" data stats --data 'twokept/s-00000.tar'
tap_grep "the reader finds the 4 kept samples, not 3" twostats.log "twokept/s-00000.tar: 4 samples"
# every report's "kept" is what a reader finds in the output (issue 31: a
# report said 2 where the output held 1)
report_kept() { sed -n 's/^ *"kept": \([0-9]*\),*$/\1/p' "$1"; }
read_back() { "$vlp" data stats --data "$1" 2>/dev/null | sed -n 's/^.*: \([0-9]*\) samples, .*$/\1/p'; }
for out in w/kept.tsv b/purple.tsv d/exact.tsv d/sem.tsv broken-kept.tsv twokept/s; do
    spec=$out; [ -d "$(dirname "$out")" ] && [ ! -f "$out" ] && spec="$out-00000.tar"
    k=$(report_kept "$out.report.json") got=$(read_back "$spec")
    echo "$out: report $k, read back $got" > readback.log
    tap_if "$out: the report's kept ($k) is what a reader finds" readback.log [ -n "$k" -a "$k" = "$got" ]
done
# a report shows a path that is not UTF-8 repaired (jansson dropped the field)
cp pairs.tsv "caf$(printf '\351').tsv"
tap_check "filter a table whose name is not UTF-8" latin.log "$vlp" data filter --data "caf$(printf '\351').tsv" \
    --out latin/kept.tsv --min-words 1
tap_if "its report names it, repaired" latin.log grep -q "\"data\": \"caf$(printf '\357\277\275').tsv\"" latin/kept.tsv.report.json
tap_end
