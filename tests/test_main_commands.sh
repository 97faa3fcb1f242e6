#!/bin/sh
# The main commands end to end on a small model, through VLP_TEST_RUNNER
# when it is set (qemu-aarch64 for the arm64 build of make test-arm64, where
# the other shell tests cannot exec the foreign vlp): info, tokenize, models,
# train, resume, embed, search, classify, eval and quantize, with their
# results checked, and a bad input refused.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
. "$root/tests/tap.sh"
run=${VLP_TEST_RUNNER:-}
vlp() { $run "$here/../vlp" "$@"; }
tap_tmpdir main-commands
cd "$tmp" || exit 1
export VLP_PROGRESS_SECONDS=0 OMP_NUM_THREADS=2

tap_check "vlp info" info.log vlp info
tap_grep "the system line names the level" info.log "isa = "
tap_check "vlp tokenize" tok.log vlp tokenize "a photo of a cat"
tap_grep "OpenAI's ids" tok.log "49406 320 1125 539 320 2368 49407 0"
tap_check "vlp models" models.log vlp models
tap_grep "open_clip's names" models.log "ViT-B-32"

mkdir img
$run "$here/tools/make_pairs" img 24 > pairs.tsv
cat > small.json <<'JSON'
{"embed_dim": 16, "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
 "text_cfg": {"context_length": 16, "vocab_size": 512, "width": 32, "layers": 1, "heads": 2}}
JSON
tap_check "vlp train (3 steps)" train.log vlp train --train-data pairs.tsv --model-config small.json --batch 8 \
    --steps 3 --warmup 1 --tokenizer-merges 40 --out run --threads 2 --workers 1 --save-every 2
tap_if "a checkpoint written" train.log [ -s run/latest.safetensors ]
tap_check "vlp train --resume to 4 steps" resume.log vlp train --out run --resume --steps 4
tap_grep "it resumed" resume.log "resum"
cut -f1 pairs.tsv | tail -n +2 > images.txt
tap_check "vlp embed" embed.log vlp embed --model run/latest.safetensors --images images.txt --out e.npy
tap_if "24 embeddings of 16 floats (.npy: 128-byte header)" embed.log [ "$(wc -c < e.npy)" = $((128 + 24 * 16 * 4)) ]
tap_check "vlp search" search.log vlp search --model run/latest.safetensors --index e.npy --names images.txt --text "red"
tap_grep "a ranked path" search.log "img/"
tap_check "vlp classify" cls.log vlp classify --model run/latest.safetensors --image img/img000.png --labels red,green,blue
tap_grep "a label" cls.log "red"
tap_check "vlp eval --zeroshot" eval.log vlp eval --model run/latest.safetensors --data pairs.tsv --label-key colour --zeroshot
tap_grep "an accuracy line" eval.log "RESULT name=zeroshot"
tap_check "vlp quantize" q.log vlp quantize --model run/latest.safetensors --out q8.safetensors
tap_check "the int8 model embeds" qe.log vlp embed --model q8.safetensors --images images.txt --out q.npy
printf 'not an image' > img/bad.png
printf 'img/bad.png\n' > bad.txt
vlp embed --model run/latest.safetensors --images bad.txt --out bad.npy > bad.log 2>&1
tap_if "a broken image: non-zero exit" bad.log [ $? -ne 0 ]
tap_grep "named in the message" bad.log "bad.png"
tap_if "and no output left" bad.log [ ! -e bad.npy ]
tap_end
