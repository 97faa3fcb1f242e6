#!/bin/sh
# The main commands end to end on a small model, through VLP_TEST_RUNNER
# when it is set (qemu-aarch64 for the arm64 build of make test-arm64, where
# the other shell tests cannot exec the foreign vlp): info, tokenize, models,
# train, resume, embed, search, classify, eval and quantize, with their
# results checked, and a bad input refused.
set -u
here=$(cd "$(dirname "$0")" && pwd)
# the repository: up from build/<mode>/tests, or build/arm64/<mode>/tests
root=$(dirname "$here")
while [ ! -f "$root/tests/tap.sh" ] && [ "$root" != / ]; do root=$(dirname "$root"); done
. "$root/tests/tap.sh"
run=${VLP_TEST_RUNNER:-}
# under a runner each command gets a time limit: a hang fails, it does not stop the suite
limit=
[ -n "$run" ] && limit="timeout 900"
vlp() { $limit $run "$here/../vlp" "$@"; }
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
# training and embedding decode images on threads of their own: under a
# runner that cannot start one (tests/run.sh says so; qemu-user in some
# sandboxes) the rest is skipped
if [ -n "$run" ] && ! timeout 60 $run "$here/tools/thread_probe" > /dev/null 2>&1; then
    echo "# $run cannot start a thread here: the commands that decode images are skipped"
    tap_end
    exit
fi
tap_check "vlp train (3 steps)" train.log vlp train --train-data pairs.tsv --model-config small.json --batch 8 \
    --steps 3 --warmup 1 --tokenizer-merges 40 --out run --threads 2 --workers 1 --save-every 2
tap_if "a checkpoint written" train.log [ -s run/latest.safetensors ]
tap_check "vlp train --resume to 4 steps" resume.log vlp train --out run --resume --steps 4
tap_grep "it resumed" resume.log "resum"
model="--model run/latest.safetensors"
cut -f1 pairs.tsv | tail -n +2 > images.txt
tap_check "vlp embed" embed.log vlp embed $model --images images.txt --out e.npy
tap_if "24 embeddings (the .npy's shape)" embed.log sh -c "head -c 128 e.npy | grep -aq \"'shape': (24, \""
tap_check "vlp search" search.log vlp search $model --index e.npy --names images.txt --text "red"
tap_grep "a ranked path" search.log "img/"
tap_check "vlp classify" cls.log vlp classify $model --image img/img000.png --labels red,green,blue
tap_grep "a label" cls.log "red"
tap_check "vlp eval --zeroshot" eval.log vlp eval $model --data pairs.tsv --label-key colour --zeroshot
tap_grep "an accuracy line" eval.log "RESULT name=zeroshot"
tap_check "vlp quantize" q.log vlp quantize $model --out q8.safetensors
tap_check "the int8 model embeds" qe.log vlp embed --model q8.safetensors ${model#*.safetensors} --images images.txt --out q.npy
printf 'not an image' > img/bad.png
printf 'img/bad.png\n' > bad.txt
vlp embed $model --images bad.txt --out bad.npy > bad.log 2>&1
tap_if "a broken image: non-zero exit" bad.log [ $? -ne 0 ]
tap_grep "named in the message" bad.log "bad.png"
tap_if "and no output left" bad.log [ ! -e bad.npy ]
tap_end
