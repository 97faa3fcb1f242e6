#!/bin/sh
# vlp train as a user runs it, in a temporary directory: 32 pairs of small
# PNGs written as a TSV, 4 steps with --val-data and --zeroshot-data (the
# validation figures on screen and in metrics.jsonl); Ctrl-C in the middle
# of a run and --resume give the uninterrupted run's losses; every refused
# combination says why and exits non-zero; eval, embed, search and classify
# on the result. Runs the build's own vlp (so under ASan too).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
. "$root/tests/tap.sh"
vlp=$here/../vlp
ref=$root/tests/ref
tap_tmpdir train-cli
cd "$tmp" || exit 1
export VLP_PROGRESS_SECONDS=0 OMP_NUM_THREADS=2

mkdir img
"$here/tools/make_pairs" img 32 > pairs.tsv
head -n 17 pairs.tsv > val.tsv
common="--batch 8 --warmup 1 --tokenizer-merges 60 --threads 2 --workers 1 --log-every 1"

# 1. training with validation on the user's own pairs
tap_check "train with --val-data and --zeroshot-data" train.log "$vlp" train --train-data pairs.tsv \
    --val-data val.tsv --zeroshot-data val.tsv --label-key colour --templates default \
    --out r $common --steps 4 --eval-every 2
tap_grep "validation: retrieval both ways on screen" train.log "image->text  R@1"
tap_grep "validation: at step 2" train.log "eval @ step 2 on val.tsv (16 images, 16 distinct captions)"
tap_grep "validation: the final figures as a RESULT line" train.log "RESULT name=val step=4 images=16"
tap_grep "zero-shot: 8 classes" train.log "zero-shot @ step 4 on val.tsv (16 images, 8 classes)"
n=$(grep -c '"val":{"images":16,"texts":16,"loss":' r/metrics.jsonl)
[ "$n" = 2 ] && tap_ok "metrics.jsonl: validation at steps 2 and 4" || tap_not_ok "metrics.jsonl: validation at steps 2 and 4 ($n lines)" r/metrics.jsonl
tap_grep "metrics.jsonl: R@10 both ways" r/metrics.jsonl '"t2i_r10":'
tap_grep "metrics.jsonl: zero-shot accuracy" r/metrics.jsonl '"zeroshot":{"images":16,"classes":8,"top1":'

# a zero-shot set needs no captions: image and label columns alone
{ printf 'filepath\tcolour\n'; tail -n +2 val.tsv | cut -f1,3; } > labels.tsv
tap_check "zero-shot on images and labels alone" zs.log "$vlp" train --train-data pairs.tsv \
    --zeroshot-data labels.tsv --label-key colour --out z $common --steps 2
tap_grep "zero-shot: 8 classes from the labels" zs.log "zero-shot @ step 2 on labels.tsv (16 images, 8 classes)"

# 2. Ctrl-C mid-run and --resume: the uninterrupted run's losses, step for step
"$vlp" train --train-data pairs.tsv --out full $common --steps 12 > full.log 2>&1
: > cut.log
"$vlp" train --train-data pairs.tsv --out cut $common --steps 12 > cut.log 2>&1 &
pid=$!
i=0
while [ $i -lt 600 ] && ! grep -q "^step 3/12" cut.log; do sleep 0.05; i=$((i + 1)); done
kill -INT $pid
wait $pid
rc=$?
[ $rc = 130 ] && tap_ok "Ctrl-C: saves and exits 130" || tap_not_ok "Ctrl-C: saves and exits 130 (exit $rc)" cut.log
tap_grep "Ctrl-C: says how to continue" cut.log "--resume"
tap_check "--resume continues the run" resume.log "$vlp" train --out cut --resume --threads 2 --workers 1 --log-every 1
metrics_losses full/metrics.jsonl > full.loss
metrics_losses cut/metrics.jsonl > cut.loss
if [ "$(wc -l < full.loss)" = 12 ] && cmp -s full.loss cut.loss; then tap_ok "interrupted + resumed = uninterrupted: 12 losses bit for bit"
else paste full.loss cut.loss > loss.diff; tap_not_ok "interrupted + resumed = uninterrupted" loss.diff; fi
# gradient checkpointing recomputes the same activations: the same 12 losses, bit for bit
"$vlp" train --train-data pairs.tsv --out ckpt $common --steps 12 --grad-checkpointing > ckpt.log 2>&1
metrics_losses ckpt/metrics.jsonl > ckpt.loss
if [ "$(wc -l < ckpt.loss)" = 12 ] && cmp -s full.loss ckpt.loss; then tap_ok "--grad-checkpointing: the same 12 losses bit for bit"
else paste full.loss ckpt.loss > ckpt.diff; tap_not_ok "--grad-checkpointing: the same losses" ckpt.diff; fi
tap_grep "--grad-checkpointing is said" ckpt.log "activations: gradient checkpointing"
tap_check "a resumed run turns it off" ckoff.log "$vlp" train --out ckpt --resume --steps 13 --no-grad-checkpointing \
    --threads 2 --workers 1
tap_no_grep "--no-grad-checkpointing: off after the resume" ckoff.log "activations: gradient checkpointing"
tap_check "--resume --steps extends a run" extend.log "$vlp" train --out cut --resume --steps 14 --threads 2 --workers 1
tap_grep "the extended run trains on" extend.log "step 14/14"

# 3. refused combinations: each names what is wrong and exits non-zero
refuse() { what=$1 pattern=$2; shift 2; tap_refused "$what" "$pattern" "$vlp" train "$@"; } # WHAT PATTERN ARGS...
refuse "another --lr on resume" "--lr 0.0005, not 0.5" --out cut --resume --lr 0.5
refuse "another --beta2 on resume" "--beta2 0.98, not 0.9" --out cut --resume --beta2 0.9
refuse "another --eps on resume" "--eps 1e-06, not 1e-08" --out cut --resume --eps 1e-8
refuse "another --batch on resume" "--batch 8, not 16" --out cut --resume --batch 16
refuse "another objective on resume" "the run trains the clip objective, not siglip" --out cut --resume --objective siglip
refuse "an option of another objective" "--caption-weight is an option of coca, not of the clip objective" \
    --train-data pairs.tsv --out x1 --caption-weight 1
refuse "coca on a config without a decoder" "the coca objective needs a model with a text decoder (config multimodal_cfg); tiny has none" \
    --train-data pairs.tsv --out x2 --objective coca
refuse "an unknown objective, listing the known" "--objective must be one of clip, siglip, filip, coca, textlm, mae, clip-mae, itc-itm-mlm, not 'nope'" \
    --train-data pairs.tsv --out x3 --objective nope
refuse "an objective option out of range" "--mask-ratio wants a number in" \
    --train-data pairs.tsv --out x4 --objective mae --model-config tiny-mae --mask-ratio 2
refuse "locking the tower MAE trains" "the mae objective trains the image tower: it cannot be locked" \
    --train-data pairs.tsv --out x5 --objective mae --model-config tiny-mae --lock-image
refuse "a new run in a run's directory" "already holds a run" --train-data pairs.tsv --out r --steps 1
refuse "other data on resume" "pairs.tsv\", not \"val.tsv\"; a resumed run reads the same data" \
    --out cut --resume --train-data val.tsv
# the run records its data's paths absolute: it resumes from any directory (issue 30, item 6)
mkdir -p elsewhere
(cd elsewhere && "$vlp" train --out "$tmp/cut" --resume --steps 15 --threads 2 --workers 1) > anywhere.log 2>&1
tap_if "a run resumes from another directory" anywhere.log [ $? = 0 ]
tap_grep "its data read by the recorded absolute path" cut/data.json "\"train_data\": \"$tmp/pairs.tsv\""
refuse "an unknown option" "unknown option '--nope'" --nope 1
refuse "a validation set that is not there, before training" "no-such.tsv" \
    --train-data pairs.tsv --val-data no-such.tsv --out x6 --steps 2
[ ! -e x6 ] && tap_ok "refused before training: no run directory" || tap_not_ok "refused before training: no run directory" refused.log
refuse "training data that is not there" "no-such-pairs.tsv" --train-data no-such-pairs.tsv --out x7 --steps 2
[ ! -e x7 ] && tap_ok "a new run that fails in its set-up takes its directory away (config, tokenizer, lock)" ||
    { ls -la x7 >> refused.log; tap_not_ok "a new run that fails in its set-up takes its directory away" refused.log; }
refuse "--model-config on resume" "--model-config applies to a new run" --out cut --resume --model-config ViT-B-32
refuse "locking the tower on resume" "--lock-image off, not on" --out cut --resume --lock-image
# a run directory's data.json holds no value the flag would refuse (issue 31, item 2)
cp -r cut badjson
sed 's/"crop_scale": [0-9.e-]*/"crop_scale": -1/' cut/data.json > badjson/data.json
refuse "data.json's crop_scale out of --crop-scale's range" \
    'badjson/data.json: "crop_scale" is -1; --crop-scale takes a number in [0.01, 1]' --out badjson --resume
sed 's/"shuffle_buffer": [0-9]*/"shuffle_buffer": 2147483647/' cut/data.json > badjson/data.json
refuse "data.json's shuffle_buffer out of range, before a huge allocation" \
    '"shuffle_buffer" is 2147483647; --shuffle-buffer takes a whole number in 0..16777216' --out badjson --resume
sed 's/"templates": "[^"]*"/"templates": null/' cut/data.json > badjson/data.json
refuse "data.json's templates null where the flag has a default" '"templates" is null; --templates takes text' \
    --out badjson --resume

# 4. the trained model in the other commands
m="--model r/latest.safetensors"
tap_check "eval on the run" eval.log "$vlp" eval $m --data val.tsv --label-key colour
tap_grep "eval: retrieval" eval.log "RESULT name=retrieval"
tail -n +2 val.tsv | cut -f1 > images.txt
tail -n +2 val.tsv | cut -f2 > texts.txt
tap_check "embed the captions" embed.log "$vlp" embed $m --texts texts.txt --out t.npy
tap_check "embed the images" embed-img.log "$vlp" embed $m --images images.txt --out i.npy
[ -s t.npy ] && [ -s i.npy ] && tap_ok "embed: wrote both .npy" || tap_not_ok "embed: wrote both .npy" embed.log
tap_check "search the images by text" search.log "$vlp" search $m --index i.npy --names images.txt \
    --text "a red square at the top left" -k 3
tap_grep "search: names the images" search.log "img/img0"
tap_check "classify an image" classify.log "$vlp" classify $m --image img/img000.png --labels red,green,blue
tap_grep "classify: each label" classify.log "green"
# the model keeps its preprocessing: trained on white, every command composites
# on white unless told otherwise (--drop-alpha), and says so
tap_check "train with --white-background" wb.log "$vlp" train --train-data pairs.tsv --out wb $common --steps 1 \
    --white-background
tap_grep "the run's config keeps it" wb/config.json '"image_background": "white"'
echo "$ref/alpha.png" > alpha.txt
tap_check "embed a transparent image with that model" wb-embed.log "$vlp" embed --model wb/latest.safetensors \
    --images alpha.txt --out wb-model.npy
tap_grep "the model says what it does with alpha" wb-embed.log "transparent pixels on white"
tap_check "embed it with --white-background" wb-white.log "$vlp" embed --model wb/latest.safetensors \
    --white-background --images alpha.txt --out wb-white.npy
tap_check "embed it with --drop-alpha" wb-drop.log "$vlp" embed --model wb/latest.safetensors --drop-alpha \
    --images alpha.txt --out wb-drop.npy
tap_if "the model's rule is on white: the same bytes as --white-background" wb-embed.log cmp wb-model.npy wb-white.npy
tap_if "and not those of --drop-alpha" wb-drop.log sh -c '[ -s wb-drop.npy ] && ! cmp -s wb-model.npy wb-drop.npy'
tap_check "a model trained without it" plain-embed.log "$vlp" embed $m --images alpha.txt --out plain.npy
tap_check "the same with --drop-alpha" plain-drop.log "$vlp" embed $m --drop-alpha --images alpha.txt --out plain-drop.npy
tap_if "drops alpha, as open_clip" plain-embed.log cmp plain.npy plain-drop.npy
tap_no_grep "and does not say on white" plain-embed.log "transparent pixels on white"
# a table whose every image is missing: said so, with the first skipped row
printf 'filepath\ttitle\nnone1.png\ta cat\nnone2.png\ta dog\n' > missing.tsv
"$vlp" train --train-data missing.tsv --model-config tiny --out missing-run --steps 2 > missing.log 2>&1
tap_if "training data without a usable sample: exit 1, the first skipped row named" missing.log \
    [ $? = 1 -a "$(grep -c 'missing.tsv: no usable sample (2 skipped; the first: missing.tsv:2' missing.log)" = 1 ]
# a training set whose path is not UTF-8 cannot be recorded in data.json: refused
# before training (issue 31: data.json lost it, and --resume read another set)
cp pairs.tsv "caf$(printf '\351').tsv"
refuse "a path that is not UTF-8" "is not UTF-8 text, and the run records it in latin/data.json (JSON); rename it" \
    --train-data "caf$(printf '\351').tsv" --out latin $common --steps 1
tap_if "and no run directory is left" refused.log [ ! -e latin ]
tap_end
