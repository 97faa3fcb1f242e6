#!/bin/sh
# The vlp command as a user runs it, from a directory outside the repository:
# help with defaults, the shipped vocabulary and configs found without the
# working directory's help, `vlp train --train-data mine.tsv --out run` on its
# own (default architecture, no emoji corpus needed), errors that name what is
# wrong, and progress as whole lines when the output is not a terminal.
# Runs with the build's own vlp (build/<mode>/vlp), so under ASan too.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
. "$root/tests/tap.sh"
vlp=$here/../vlp
ref=$root/tests/ref
tap_tmpdir cli
cd "$tmp" || exit 1
export VLP_PROGRESS_SECONDS=0 OMP_NUM_THREADS=2

tap_check "vlp --help" help.log "$vlp" --help
tap_grep "the command list names models" help.log "models    the architectures"
tap_check "vlp train --help" train-help.log "$vlp" train --help
tap_grep "train's help gives the default architecture" train-help.log "(default tiny)"
tap_grep "train's help: validation on the user's pairs" train-help.log "--val-data SPEC"
tap_grep "train's help: the objectives from their table, with their options' defaults" train-help.log "--mae-weight X      weight of the reconstruction loss (default: clip-mae 1)"
# the instruction-set level: VLP_CPU lowers it, never raises it, and says why
tap_check "vlp info --levels" levels.log "$vlp" info --levels
tap_if "the levels start with portable, each marked yes or no" levels.log \
    awk -F'\t' 'NR == 1 && $1 != "portable" { exit 1 } $2 != "yes" && $2 != "no" { exit 1 }' levels.log
tap_check "VLP_CPU=portable vlp info" port.log env VLP_CPU=portable "$vlp" info
tap_grep "the system line names the level it was lowered to" port.log "isa = portable"
tap_grep "and the kernels' levels" port.log "kernels: eltwise=portable attention=gemm int8=portable"
VLP_CPU=pentium4 "$vlp" info > bad-level.log 2>&1
tap_if "a level that does not exist: exit 2" bad-level.log [ $? -eq 2 ]
tap_grep "and the message lists the levels" bad-level.log "VLP_CPU=pentium4 is no level of this build; the levels: portable"
above=$(awk -F'\t' '$2 == "no" { print $1; exit }' levels.log)
if [ -n "$above" ]; then
    VLP_CPU=$above "$vlp" info > above.log 2>&1
    tap_if "a level above this CPU ($above): exit 2" above.log [ $? -eq 2 ]
    tap_grep "and it says what the CPU lacks" above.log "is above this CPU"
else
    echo "ok $((tap_n + 1)) # SKIP this CPU runs every level: none to refuse"; tap_n=$((tap_n + 1))
fi

tap_check "vlp tokenize with the shipped vocabulary" tok.log "$vlp" tokenize "a photo of a cat"
tap_grep "OpenAI's ids" tok.log "49406 320 1125 539 320 2368 49407 0"

# the shipped merges are the file vocab/README.md describes
want=$(sed -n 's/^- sha256 `\([0-9a-f]*\)`.*/\1/p' "$root/vocab/README.md")
got=$(sha256sum "$root/vocab/bpe_simple_vocab_16e6.txt.gz" | cut -d' ' -f1)
if [ -n "$want" ] && [ "$want" = "$got" ]; then tap_ok "vocab/: the sha256 of vocab/README.md"
else echo "README $want, file $got" > sha.log; tap_not_ok "vocab/: the sha256 of vocab/README.md" sha.log; fi

# VLP_DATA_DIR overrides where the data is looked up, and only it is tried
VLP_DATA_DIR=$tmp/no-such-dir "$vlp" tokenize "a cat" > datadir-bad.log 2>&1
tap_grep "VLP_DATA_DIR that does not exist is named" datadir-bad.log "not in VLP_DATA_DIR=$tmp/no-such-dir (no such directory)"
mkdir -p mydata/configs && cp "$ref/headwidth.json" mydata/configs/mine.json
VLP_DATA_DIR=$tmp/mydata "$vlp" models > datadir-models.log 2>&1
tap_grep "VLP_DATA_DIR's configs are the names" datadir-models.log "mine "
tap_no_grep "only VLP_DATA_DIR is read" datadir-models.log "ViT-B-32"

# a labelled set: the two reference images, 70 rows
{ printf 'filepath\ttitle\tlabel\n'
  i=0; while [ $i -lt 70 ]; do
      if [ $((i % 2)) = 0 ]; then printf '%s\ta red square number %d\tred\n' "$ref/img_src.png" $((i % 7));
      else printf '%s\ta blue photo number %d\tblue\n' "$ref/img_src.jpg" $((i % 5)); fi
      i=$((i + 1)); done; } > mine.tsv

# progress as whole lines when piped: one per batch of 32 images and the last
"$vlp" eval --model "$ref/api_model.safetensors" --vocab "$ref/api_merges.txt" --data mine.tsv \
    --label-key label 2>&1 | cat > eval.log
tap_grep "eval: a progress line after 32 images" eval.log "images 32 ("
tap_grep "eval: after 64" eval.log "images 64 ("
tap_grep "eval: at the end" eval.log "images 70 ("
tap_no_grep "eval: no carriage return when piped" eval.log "$(printf '\r')"
tap_grep "eval: zero-shot with the default templates" eval.log "zero-shot (70 images, 2 classes, 1 templates)"
tap_check "eval: the CLIP paper's 80 templates by name" eval80.log "$vlp" eval --model "$ref/api_model.safetensors" \
    --vocab "$ref/api_merges.txt" --data mine.tsv --label-key label --zeroshot --templates openai-imagenet
tap_grep "eval: 80 templates" eval80.log "2 classes, 80 templates"
"$vlp" eval --model "$ref/api_model.safetensors" --data mine.tsv --label-key label --templates no-such-set > badtpl.log 2>&1
tap_grep "an unknown template set is named, with the shipped ones" badtpl.log \
    "'no-such-set' is no file here and no name of vlp's templates (those are default, openai-imagenet)"

# training on your own pairs from any directory: tiny by name, no emoji corpus
tap_check "vlp train --train-data mine.tsv --out run" train.log "$vlp" train --train-data mine.tsv --out run \
    --batch 8 --steps 2 --warmup 1 --log-every 1 --tokenizer-merges 20 --threads 2
tap_grep "train: the default architecture by name" train.log "model config: tiny ("
tap_grep "train: a whole progress line per step" train.log "step 2/2  loss"
[ -f run/latest.safetensors ] && [ -f run/config.json ] && tap_ok "train: the run holds its checkpoint" ||
    tap_not_ok "train: the run holds its checkpoint" train.log
tap_no_grep "train: nothing about the emoji corpus" train.log "emoji"
"$vlp" train --out run2 --steps 1 > noemoji.log 2>&1
tap_grep "train without --train-data or the emoji corpus says what to give" noemoji.log "give the training pairs with --train-data"
"$vlp" train --train-data mine.tsv --out run3 --model-config ViT-B-17 --steps 1 > badcfg.log 2>&1
tap_grep "an unknown architecture lists the known names" badcfg.log "known are ViT-B-16"

# the trained model by its run's config, and another architecture refused with the tensor named
tap_check "vlp embed the trained model" embed.log "$vlp" embed --model run/latest.safetensors --texts mine.tsv --out e.npy
"$vlp" embed --model run/latest.safetensors --model-config ViT-B-32 --texts mine.tsv --out e2.npy > mismatch.log 2>&1
tap_grep "a config that disagrees names the tensor and both shapes" mismatch.log "tensor 'positional_embedding' has shape [32, 256], the model wants [77, 512]"

# int8: vlp quantize the trained model; the int8 model embeds, and training refuses it
mkdir -p q
tap_check "vlp quantize the trained model" quant.log "$vlp" quantize --model run/latest.safetensors --out q/m.int8.safetensors --check 3
tap_grep "quantize: the model's tokenizer goes with it" quant.log "copied the model's tokenizer to q/tokenizer.merges"
cos=$(sed -n 's/^int8 vs fp32 embedding cosine, 8 captions: mean [0-9.]*, min \([0-9.]*\)$/\1/p' quant.log)
if [ -n "$cos" ] && awk "BEGIN { exit !($cos >= 0.99) }"; then tap_ok "quantize: captions' int8 embeddings within cosine 0.99 of fp32 ($cos)"
else tap_not_ok "quantize: captions' int8 embeddings within cosine 0.99 of fp32" quant.log; fi
tap_check "vlp embed the int8 model" embed8.log "$vlp" embed --model q/m.int8.safetensors --texts mine.tsv --out e8.npy
tap_grep "embed says the matmuls are int8" embed8.log "; int8 ("
"$vlp" quantize --model q/m.int8.safetensors --out q/again.safetensors > requant.log 2>&1
tap_grep "quantize refuses an int8 model" requant.log "is an int8 model already"
"$vlp" train --train-data mine.tsv --out run5 --steps 1 --init-image q/m.int8.safetensors > initq.log 2>&1
tap_grep "train refuses to start from an int8 model" initq.log "is an int8 model (vlp quantize), for inference only"
# a second model into the same folder, with another tokenizer: refused before the work
mkdir -p other && cp run/latest.safetensors other/ && sed '$d' run/tokenizer.merges > other/tokenizer.merges
"$vlp" quantize --model other/latest.safetensors --out q/other.int8.safetensors --check 1 > qother.log 2>&1
tap_if "quantize beside another model's tokenizer: exit 1, nothing written" qother.log \
    [ $? = 1 -a ! -e q/other.int8.safetensors ]
tap_grep "and it says why" qother.log "q/tokenizer.merges holds another tokenizer than the model's (other/tokenizer.merges)"

# vlp data shards: progress lines too
tap_check "vlp data shards" shards.log sh -c "'$vlp' data shards --data mine.tsv --out shards/s --samples-per-shard 50 2>&1 | cat"
tap_grep "shards: a progress line per sample count" shards.log "samples 70 ("
tap_grep "shards: written" shards.log "wrote 70 samples into 2 shards"
# an empty file and a BMP among the images: named, skipped, counted (not written as .webp)
: > empty.png
printf 'BM\066\000\000\000\000\000\000\000' > tiny.bmp
{ cat mine.tsv; printf '%s\tan empty file\tred\n%s\ta bmp\tblue\n' "$tmp/empty.png" "$tmp/tiny.bmp"; } > odd.tsv
tap_check "vlp data shards with files that are not images" odd.log "$vlp" data shards --data odd.tsv --out odd/s --samples-per-shard 50
tap_grep "shards: the odd files counted" odd.log "skipped 2 samples that are not images; the first: "
tap_grep "shards: the empty file named" odd.log "empty.png): an empty file (0 bytes), not an image"
tap_grep "shards: the images written" odd.log "wrote 70 samples into 2 shards"
# silent mismatches are said (issue 30, item 5), each with its exit code
"$vlp" train --out run --resume --steps 1 > behind.log 2>&1
tap_if "resume with --steps behind the run: exit 2" behind.log [ $? = 2 ]
tap_grep "and it says where the run is" behind.log "run is at step 2: --steps 1 is behind it"
lines=$(wc -l < run/metrics.jsonl)
"$vlp" train --out run --resume > noop.log 2>&1
tap_if "resume of a finished run: exit 0, no step, no eval line appended" noop.log \
    [ $? = 0 -a "$(wc -l < run/metrics.jsonl)" = "$lines" ]
tap_grep "and it says there is nothing to train" noop.log "run has done its 2 steps: nothing to train"
"$vlp" train --train-data mine.tsv --out run6 --batch 8 --steps 2 --warmup 5 --tokenizer-merges 20 --threads 2 > warm.log 2>&1
tap_grep "a warm-up as long as the run is said" warm.log "warning: --warmup 5 is as long as the run (2 steps)"
cut -f1 mine.tsv | tail -n +2 > imgs.txt
head -n 3 imgs.txt > three.txt
tap_check "embed the images for an index" idx.log "$vlp" embed --model run/latest.safetensors --images imgs.txt --out idx.npy
"$vlp" search --model run/latest.safetensors --index idx.npy --names three.txt --text "a red square" > names.log 2>&1
tap_if "search with a names list of another length: exit 2" names.log [ $? = 2 ]
tap_grep "and it gives both counts" names.log "three.txt has 3 names, idx.npy has 70 rows"
: > none.txt
"$vlp" embed --model run/latest.safetensors --images none.txt --out none.npy > none.log 2>&1
tap_if "embed of an empty list: exit 1, no .npy" none.log [ $? = 1 -a ! -e none.npy ]
tap_grep "and the list is named" none.log "none.txt holds no image path"
# outputs checked before the work (item 4): a directory that cannot be written
mkdir ro && chmod 555 ro
if [ -w ro ]; then echo "ok $((tap_n + 1)) # SKIP running as a user who writes anywhere"; tap_n=$((tap_n + 1))
else
    "$vlp" embed --model run/latest.safetensors --images imgs.txt --out ro/x.npy > ro.log 2>&1
    tap_if "embed into a directory it cannot write: exit 1 before the model is loaded" ro.log \
        [ $? = 1 -a "$(grep -c 'system_info' ro.log)" = 0 ]
    tap_grep "and the output is named" ro.log "cannot write ro/x.npy"
fi
: > afile
"$vlp" embed --model run/latest.safetensors --images imgs.txt --out afile/x.npy > infile.log 2>&1
tap_if "embed into a path under a file: exit 1 before the model is loaded" infile.log \
    [ $? = 1 -a "$(grep -c 'system_info' infile.log)" = 0 ]
tap_grep "and the output is named" infile.log "cannot write afile/x.npy"
tap_check "embed creates the output's directory" mk.log "$vlp" embed --model run/latest.safetensors --texts three.txt --out new/dir/t.npy
[ -s new/dir/t.npy ] && tap_ok "the .npy is there" || tap_not_ok "the .npy is there" mk.log
chmod 755 ro
# messages that fit the case (issue 30, item 7): what is wrong, where, and no
# source location or generic hint unless --verbose
m="--model $ref/api_model.safetensors --vocab $ref/api_merges.txt"
printf 'path\tcaption\tlabel\textra\n%s\tred\tred\tx\n' "$ref/img_src.png" > cols.tsv
"$vlp" data stats --data cols.tsv > cols.log 2>&1
tap_grep "a missing column: every column of the header listed" cols.log \
    "cols.tsv:1: the header lacks column 'filepath' (its columns: path, caption, label, extra)"
tap_no_grep "and no source location" cols.log "src/"
tap_no_grep "and no hint about a corrupt file" cols.log "corrupt"
"$vlp" data stats --data cols.tsv --verbose > cols-v.log 2>&1
tap_grep "--verbose gives the source location" cols-v.log "src/data/source_"
printf '\357\273\277filepath\ttitle\n%s\ta red square\n' "$ref/img_src.png" > bom.tsv
tap_check "a header with a UTF-8 byte order mark reads" bom.log "$vlp" data stats --data bom.tsv
tap_grep "its sample counted" bom.log "bom.tsv: 1 samples"
echo "$tmp/empty.png" > empty.txt
"$vlp" embed $m --images empty.txt --out e0.npy > empty-img.log 2>&1
tap_grep "a zero-byte image is an empty file" empty-img.log "empty.png: an empty file (0 bytes), not an image"
tap_no_grep "not a missing feature" empty-img.log "rebuild"
"$vlp" embed --model mine.tsv --texts empty.txt --out e1.npy > text-model.log 2>&1
tap_grep "a text file as --model: not a safetensors file, its first bytes shown" text-model.log \
    "mine.tsv is not a safetensors file: it does not begin with a header length and a JSON header '{...' (its first bytes: \"filepath.title.l\")"
mkdir -p adir
"$vlp" embed --model adir --texts empty.txt --out e2.npy > dir-model.log 2>&1
tap_grep "a directory as --model" dir-model.log "adir is a directory, not a .safetensors file"
head -c 100 "$ref/api_model.safetensors" > cut.safetensors
"$vlp" embed --model cut.safetensors --texts empty.txt --out e3.npy > cut-model.log 2>&1
tap_grep "a cut safetensors file is said to be cut" cut-model.log "cut.safetensors is cut short: its header takes"
printf 'a drawing of a {}\n' > tmpl
tap_check "a template file in the working directory, named as a set would be, is the user's file" tmpl.log \
    "$vlp" classify $m --image "$ref/img_src.png" --labels red,blue --templates tmpl
# threads on a busy machine (issue 30, item 8): with another process running
# at start, OpenMP's idle workers wait passively; a user's OMP_WAIT_POLICY wins
sh -c 'while :; do :; done' &
busy=$!
sleep 0.3
env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT "$vlp" info > busy-info.log 2>&1
OMP_WAIT_POLICY=active "$vlp" info > busy-active.log 2>&1
kill $busy
tap_grep "another process running: idle threads wait passively, and the line says so" busy-info.log \
    "running at start: idle threads wait passively (OMP_WAIT_POLICY=passive"
tap_no_grep "the user's OMP_WAIT_POLICY is kept" busy-active.log "wait passively"
# a list's relative paths are relative to the list's directory, as a table's
mkdir -p lists/pics && cp "$ref/img_src.png" lists/pics/a.png && echo pics/a.png > lists/rel.txt
echo "$tmp/lists/pics/a.png" > abs.txt
tap_check "embed a list of paths relative to its own directory, from elsewhere" rel.log "$vlp" embed $m \
    --images lists/rel.txt --out rel.npy
tap_check "the same image by its absolute path" abs.log "$vlp" embed $m --images abs.txt --out abs.npy
tap_if "the same embedding" rel.log cmp rel.npy abs.npy
# a caption that is not UTF-8 goes into a shard repaired, not as an empty {} (issue 31)
printf 'filepath\ttitle\n%s\tcaf\351 au lait\n' "$ref/img_src.png" > latin.tsv
tap_check "shards of a Latin-1 caption" latin-sh.log "$vlp" data shards --data latin.tsv --out latin/s
tap_check "read back" latin-st.log "$vlp" data stats --data latin/s-00000.tar
tap_grep "the sample is there" latin-st.log "latin/s-00000.tar: 1 samples, 0 rows/members skipped"
"$vlp" data tokenizer --captions mine.tsv --out m.merges --min-count 4294967297 > mincount.log 2>&1
tap_if "--min-count beyond an int is refused (it became 1)" mincount.log [ $? = 2 -a ! -e m.merges ]
tap_end
