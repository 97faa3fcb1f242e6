#!/bin/sh
# vlp adapt as a user runs it, in a temporary directory: 64 labelled PNGs (8
# colours) as a TSV and as a folder tree; CoOp, CoCoOp, MaPLe and the linear
# probe learnt on the small reference model, then used by vlp eval and vlp
# classify --prompts; the shots drawn the same for the same seed; --classes;
# refusals that name what is wrong. Runs the build's own vlp (so under ASan).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
. "$root/tests/tap.sh"
vlp=$here/../vlp
ref=$root/tests/ref
tap_tmpdir adapt-cli
cd "$tmp" || exit 1
export VLP_PROGRESS_SECONDS=0 OMP_NUM_THREADS=2

mkdir img
"$here/tools/make_pairs" img 64 > pairs.tsv
model="--model $ref/api_model.safetensors --vocab $ref/api_merges.txt --threads 2"

# 1. each method learns, writes its file, and vlp eval / classify use it. The
# reference model has 12 text tokens and a vocabulary that spells most words
# letter by letter ("purple." is 7 tokens): short contexts, no phrase
tap_check "adapt --method coop" coop.log "$vlp" adapt --method coop $model --data pairs.tsv --label-key colour \
    --shots 2 --epochs 2 --n-ctx 2 --out coop.safetensors
tap_check "adapt --method cocoop" cocoop.log "$vlp" adapt --method cocoop $model --data pairs.tsv --label-key colour \
    --shots 2 --epochs 2 --init "" --n-ctx 2 --out cocoop.safetensors
tap_check "adapt --method maple" maple.log "$vlp" adapt --method maple $model --data pairs.tsv --label-key colour \
    --shots 2 --epochs 2 --init "" --out maple.safetensors
tap_check "adapt --method linear-probe" linear-probe.log "$vlp" adapt --method linear-probe $model --data pairs.tsv \
    --label-key colour --shots 2 --out linear-probe.safetensors
for m in coop cocoop maple linear-probe; do
    tap_grep "$m: 2 shots of 8 classes" $m.log "shots: 16 images of 8 classes (2 a class, seed 1)"
    tap_grep "$m: the file is written" $m.log "wrote $m.safetensors ($m, 8 classes)"
    tap_check "eval --prompts $m" $m.eval "$vlp" eval $model --data pairs.tsv --label-key colour --prompts $m.safetensors
    tap_grep "eval --prompts $m: every labelled image, 8 classes" $m.eval "images=64 classes=8"
    tap_check "classify --prompts $m" $m.cls "$vlp" classify $model --image img/img000.png --prompts $m.safetensors
    n=$(grep -c "	" $m.cls)
    sum=$(awk -F'\t' 'NF == 2 { s += $1 } END { printf "%.2f", s }' $m.cls)
    [ "$n" = 8 ] && [ "$sum" = 1.00 ] && tap_ok "classify --prompts $m: 8 probabilities summing to 1" ||
        tap_not_ok "classify --prompts $m: 8 probabilities summing to 1 ($n lines, sum $sum)" $m.cls
done
"$vlp" adapt --method cocoop $model --data pairs.tsv --label-key colour --shots 2 --out x.safetensors > long.log 2>&1
tap_grep "cocoop's \"a photo of a <name>.\" does not fit 12 tokens: said, naming the class" long.log \
    "(\"black\"): its prompt (9 context tokens, the name and \".\") does not fit the model's 12 text tokens"
tap_grep "coop: the paper's settings said" coop.log "2 context tokens; 64 parameters; 2 epochs of batch 32, lr 0.002"
tap_grep "maple: the prompt depth" maple.log ", depth 2;"
tap_grep "progress as whole lines, the last epoch" coop.log "epoch 2/2  step 1/1  loss"
tap_grep "linear probe: fitted on the shots" linear-probe.log "linear probe: 16 shots, l2 0.001, train accuracy"

# 2. the same seed draws the same shots and learns the same prompts; another seed does not
"$vlp" adapt --method coop $model --data pairs.tsv --label-key colour --shots 2 --epochs 2 --n-ctx 2 --out again.safetensors > again.log 2>&1
tap_if "the same seed: the same prompt file, byte for byte" again.log cmp -s coop.safetensors again.safetensors
"$vlp" adapt --method coop $model --data pairs.tsv --label-key colour --shots 2 --epochs 2 --n-ctx 2 --seed 2 --out s2.safetensors > s2.log 2>&1
tap_if "another seed: another file" s2.log sh -c '! cmp -s coop.safetensors s2.safetensors'

# 3. a folder of class folders; --classes picks and orders the classes
mkdir -p tree/a_red tree/a_blue tree/.hidden
for i in 000 008 016; do cp img/img$i.png tree/a_red/; done
for i in 002 010 018; do cp img/img$i.png tree/a_blue/; done
tap_check "adapt from a folder tree" tree.log "$vlp" adapt --method coop $model --data tree --shots 2 --epochs 1 \
    --n-ctx 2 --out tree.safetensors
tap_grep "folder names are the classes ('_' a space)" tree.log "shots: 4 images of 2 classes"
tap_check "classify --prompts: the folder's classes" tree.cls "$vlp" classify $model --image img/img000.png --prompts tree.safetensors
tap_grep "classify names the class 'a red'" tree.cls "a red"
printf 'blue\nred\ngreen\n' > three.txt
tap_check "adapt --classes: three of the eight" three.log "$vlp" adapt --method coop $model --data pairs.tsv \
    --label-key colour --classes three.txt --shots 3 --epochs 1 --n-ctx 2 --out three.safetensors
tap_grep "--classes: 3 classes, 3 shots each" three.log "shots: 9 images of 3 classes"
tap_grep "--classes: the others are counted" three.log "left out: 40 images of labels not in three.txt"
tap_check "eval --classes: the zero-shot over three classes" three.eval "$vlp" eval $model --data pairs.tsv \
    --label-key colour --prompts three.safetensors --classes three.txt
tap_grep "eval --classes: 24 images of 3 classes" three.eval "images=24 classes=3"
printf 'red\nblue\n' > two.txt
tap_check "eval: a shared context takes other classes" two.eval "$vlp" eval $model --data pairs.tsv \
    --label-key colour --prompts three.safetensors --classes two.txt
tap_grep "eval: 2 classes" two.eval "images=16 classes=2"
tap_check "eval --classes with templates" tpl.eval "$vlp" eval $model --data pairs.tsv --label-key colour \
    --zeroshot --classes two.txt
tap_grep "eval --classes with templates: 2 classes" tpl.eval "images=16 classes=2"
tap_check "more shots than a class has: all of them, with a warning" many.log "$vlp" adapt --method linear-probe \
    $model --data pairs.tsv --label-key colour --shots 20 --out many.safetensors
tap_grep "the warning names the class" many.log "warning: class \"black\" has 8 usable images, fewer than 20 shots"

# 4. refusals
"$vlp" adapt --method coop $model --data pairs.tsv --label-key colour --out x.safetensors > bad0.log 2>&1
tap_grep "a context longer than the model's text is refused" bad0.log "16 context tokens: the model's 12 text tokens take at most 9"

"$vlp" adapt --method coopp $model --data pairs.tsv --label-key colour --out x.safetensors > bad1.log 2>&1
[ $? = 2 ] && tap_grep "an unknown method is named, with the known ones" bad1.log "--method coopp is not one of coop, cocoop, maple, linear-probe" ||
    tap_not_ok "an unknown method exits 2" bad1.log
"$vlp" adapt --method maple --csc $model --data pairs.tsv --label-key colour --out x.safetensors > bad2.log 2>&1
tap_grep "--csc is CoOp's" bad2.log "--csc is CoOp's"
"$vlp" adapt --method coop --depth 2 $model --data pairs.tsv --label-key colour --out x.safetensors > bad3.log 2>&1
tap_grep "--depth is MaPLe's" bad3.log "--depth is MaPLe's"
"$vlp" adapt --method coop $model --data pairs.tsv --label-key nosuch --out x.safetensors > bad4.log 2>&1
tap_if "a missing label column fails" bad4.log sh -c '! test -e x.safetensors'
"$vlp" eval --model "$ref/headwidth_model.safetensors" --model-config "$ref/headwidth.json" --vocab "$ref/api_merges.txt" \
    --data pairs.tsv --label-key colour --prompts coop.safetensors > bad5.log 2>&1
tap_grep "prompts on another model: the hashes named" bad5.log "was learnt on the model with weights hash"
"$vlp" eval $model --data pairs.tsv --label-key colour --prompts coop.safetensors --retrieval > bad6.log 2>&1
tap_grep "--prompts is zero-shot's" bad6.log "--prompts evaluates the learnt classifier"
"$vlp" classify $model --image img/img000.png --prompts linear-probe.safetensors --labels "red,blue" > bad7.log 2>&1
tap_grep "a probe keeps its classes" bad7.log "the classifier was learnt for 8 classes, not 2"
head -c 100 coop.safetensors > cut.safetensors
"$vlp" eval $model --data pairs.tsv --label-key colour --prompts cut.safetensors > bad8.log 2>&1
tap_if "a truncated prompt file fails" bad8.log sh -c '! grep -q RESULT bad8.log'
"$vlp" eval $model --data pairs.tsv --label-key colour --prompts "$ref/api_model.safetensors" > bad9.log 2>&1
tap_grep "a model file is not a prompt file" bad9.log "not a prompt file"
"$vlp" eval $model --data pairs.tsv --label-key colour --prompts coop.safetensors --templates default > bad10.log 2>&1
tap_grep "--prompts or --templates, not both" bad10.log "--prompts and --templates exclude each other"
"$vlp" adapt --method coop --n-ctx 0 $model --data pairs.tsv --label-key colour --out x.safetensors > bad11.log 2>&1
tap_grep "CoOp with no context: nothing to learn, said before reading" bad11.log "has nothing to learn"
"$vlp" adapt --method linear-probe --wd 0.1 $model --data pairs.tsv --label-key colour --out x.safetensors > bad12.log 2>&1
tap_grep "the probe takes only --l2" bad12.log "(only --l2)"
# a class whose name is not UTF-8 is refused before the work (issue 31: the
# prompt file lost it and loaded with a class missing)
mkdir -p latin/red latin/green "latin/caf$(printf '\351')"
for d in red green "caf$(printf '\351')"; do cp "$(sed -n 2p pairs.tsv | cut -f1)" "latin/$d/a.png"; done
"$vlp" adapt --method coop $model --data latin --shots 1 --epochs 1 --out latin.safetensors > latin.log 2>&1
tap_if "a class name that is not UTF-8: exit 1, no file" latin.log [ $? = 1 -a ! -e latin.safetensors ]
tap_grep "and the class is named" latin.log "is not UTF-8 text, and a prompt file keeps its classes' names as JSON"
# so is an --init phrase, before the training (it was refused when saving)
"$vlp" adapt --method coop $model --data pairs.tsv --label-key colour --shots 1 --epochs 1 \
    --init "a caf$(printf '\351') photo of a" --out latin2.safetensors > latin2.log 2>&1
tap_if "an --init phrase that is not UTF-8: exit 1, no file" latin2.log [ $? = 1 -a ! -e latin2.safetensors ]
tap_if "refused before the training, --init named" latin2.log env LC_ALL=C grep -aq "^vlp adapt: --init 'a caf.* photo of a' is not UTF-8 text" latin2.log
tap_end
