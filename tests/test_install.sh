#!/bin/sh
# `make install` into a temporary prefix, then, from another directory, what
# a user of the installed tool and library does: vlp tokenize with the shipped
# vocabulary, vlp models, vlp embed with --model-config, a C program built
# with `pkg-config --cflags --libs vlp` that loads a model and embeds a text
# (compared with the PyTorch reference), and `make uninstall` leaving nothing.
# Runs on the release build (build/release/tests/test_install).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
. "$root/tests/tap.sh"
tap_release_only "make install is tested once, on the release build"
tap_tmpdir install
prefix=$tmp/prefix
mkdir "$tmp/elsewhere"
cd "$tmp/elsewhere" || exit 1
ref=$root/tests/ref

tap_check "make install PREFIX=$prefix" "$tmp/install.log" make -C "$root" --no-print-directory install PREFIX="$prefix"
for f in bin/vlp lib/libvlp.a lib/libvlp.so lib/pkgconfig/vlp.pc include/vlp.h \
         share/vlp/vocab/bpe_simple_vocab_16e6.txt.gz share/vlp/configs/ViT-B-16.json \
         share/vlp/configs/tiny.json share/vlp/templates/default.txt; do
    [ -e "$prefix/$f" ] || { ls -R "$prefix" > "$tmp/ls.log" 2>&1; tap_not_ok "installed $f" "$tmp/ls.log"; continue; }
done
soname=$(objdump -p "$prefix/lib/libvlp.so" 2>/dev/null | awk '/SONAME/ {print $2}')
case "$soname" in libvlp.so.[0-9]*) tap_ok "libvlp.so has the soname $soname" ;;
    *) tap_not_ok "libvlp.so has a soname (got '$soname')" ;; esac

# the shipped vocabulary, found relative to the installed binary
tap_check "vlp tokenize from another directory" "$tmp/tok.log" "$prefix/bin/vlp" tokenize "a photo of a cat"
tap_grep "tokenize gives OpenAI's ids" "$tmp/tok.log" "49406 320 1125 539 320 2368 49407 0"
tap_check "vlp info" "$tmp/info.log" "$prefix/bin/vlp" info
tap_grep "vlp info names the installed data directory" "$tmp/info.log" "data: $prefix/share/vlp"
(cd "$tmp" && "$prefix/bin/vlp" data emoji --out e.tsv) > "$tmp/emoji.log" 2>&1
tap_grep "vlp data emoji without the corpus names the installed fetch script" "$tmp/emoji.log" \
    "'sh $prefix/share/vlp/scripts/get-data.sh data/emoji' fetches it, with npm"
tap_check "vlp models" "$tmp/models.log" "$prefix/bin/vlp" models
tap_grep "vlp models lists ViT-bigG-14 with its size" "$tmp/models.log" "ViT-bigG-14                2539.6M"
tap_grep "vlp models reads the installed configs" "$tmp/models.log" "(from $prefix/share/vlp/configs)"

# a model file without a config, its architecture given by --model-config
printf 'the cat\na dog\n' > texts.txt
tap_check "vlp embed --model-config FILE on a file without a config" "$tmp/embed.log" \
    "$prefix/bin/vlp" embed --model "$ref/headwidth_model.safetensors" --model-config "$ref/headwidth.json" \
    --vocab "$ref/api_merges.txt" --texts texts.txt --out emb.npy
tap_no_grep "no warning with a config" "$tmp/embed.log" "warning:"
tap_check "vlp embed without a config" "$tmp/embed2.log" \
    "$prefix/bin/vlp" embed --model "$ref/headwidth_model.safetensors" --vocab "$ref/api_merges.txt" \
    --texts texts.txt --out emb2.npy
tap_grep "without a config: the head-width warning" "$tmp/embed2.log" "head width 64"

# the library through pkg-config: load a model, embed a text
cat > prog.c <<'CEOF'
#include <stdio.h>
#include <vlp.h>
int main(int argc, char **argv) {
    if (argc != 4) return 2;
    char path[4096];
    vlp_error err;
    if (vlp_data_file("vocab/bpe_simple_vocab_16e6.txt.gz", path, sizeof path, &err) != VLP_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    printf("vocab %s\n", path);
    vlp_model_opts o = vlp_model_opts_default();
    o.vocab = argv[2];
    vlp_model *m;
    if (vlp_model_load(&m, argv[1], &o, &err) != VLP_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    float e[256];
    const char *text = argv[3];
    if (vlp_model_embed_dim(m) > 256 || vlp_encode_texts(m, &text, 1, e, &err) != VLP_OK) return 1;
    printf("text");
    for (int k = 0; k < vlp_model_embed_dim(m); k++) printf(" %.7f", e[k]);
    printf("\n");
    vlp_model_free(m);
    return 0;
}
CEOF
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
tap_check "pkg-config --cflags --libs vlp" "$tmp/pc.log" pkg-config --cflags --libs vlp
tap_check "a C program builds with pkg-config" "$tmp/cc.log" \
    sh -c 'cc -std=c11 prog.c $(pkg-config --cflags --libs vlp) -Wl,-rpath,$(pkg-config --variable=libdir vlp) -o prog'
tap_check "it runs from another directory" "$tmp/prog.log" ./prog "$ref/api_model.safetensors" "$ref/api_merges.txt" "the cat"
tap_grep "the library finds its data in the prefix" "$tmp/prog.log" "vocab $prefix/share/vlp/vocab/bpe_simple_vocab_16e6.txt.gz"
ldd ./prog > "$tmp/ldd.log" 2>&1
tap_grep "it uses the installed shared library" "$tmp/ldd.log" "$prefix/lib/libvlp.so"
# "the cat" is the first text of tests/ref/api_expected.txt (PyTorch): max |diff| <= 1e-4
if awk 'NR == FNR { if ($1 == "text" && !got) { for (k = 2; k <= NF; k++) want[k] = $k; n = NF; got = 1 } next }
        $1 == "text" { for (k = 2; k <= n; k++) { d = $k - want[k]; if (d < 0) d = -d; if (d > 1e-4) bad = 1 }; seen = 1 }
        END { exit !(seen && !bad) }' "$ref/api_expected.txt" "$tmp/prog.log"; then
    tap_ok "its embedding equals PyTorch's (max abs error <= 1e-4)"
else
    tap_not_ok "its embedding equals PyTorch's" "$tmp/prog.log"
fi

# the Python package, installed with the library: PYTHONPATH alone (docs/python.md)
if /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
    pydir=$(ls -d "$prefix"/lib/python3*/dist-packages 2>/dev/null | head -1)
    env -u VLP_LIBRARY -u VLP_DATA_DIR PYTHONPATH="$pydir" PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 -c "
import vlp
m = vlp.load('$ref/api_model.safetensors', vocab='$ref/api_merges.txt')
print(m.embed_texts(['a cat']).shape, vlp.load_templates('default'))
print(vlp.system_info())" > "$tmp/py.log" 2>&1
    tap_grep "python3 imports the installed package and embeds a text" "$tmp/py.log" "(1, 16) ['a photo of a {}.']"
    tap_grep "... through the installed library" "$tmp/py.log" "vlp 0."
    env -u VLP_LIBRARY PYTHONPATH="$pydir" /usr/bin/python3 -c "import vlp, os; print(vlp._lib._LIB._name)" > "$tmp/pylib.log" 2>&1
    tap_grep "the package loads the prefix's libvlp.so" "$tmp/pylib.log" "$prefix/lib/libvlp.so.0"
else
    tap_n=$((tap_n + 1)); echo "ok $tap_n - the installed Python package # SKIP /usr/bin/python3 has no numpy"
fi

tap_check "make uninstall" "$tmp/uninstall.log" make -C "$root" --no-print-directory uninstall PREFIX="$prefix"
find "$prefix" -type f -o -type l > "$tmp/left.log"
if [ -s "$tmp/left.log" ]; then tap_not_ok "uninstall leaves no file" "$tmp/left.log"; else tap_ok "uninstall leaves no file"; fi
tap_end
