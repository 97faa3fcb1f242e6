#!/bin/sh
# The Python package (python/vlp over build/release/libvlp.so): its pytest
# suite (python/tests: embeddings equal to vlp embed's bit for bit, training
# equal to vlp train's, search, errors, threads, no leak over 1,000 loads),
# each test a TAP line, then the tour of docs/python.md
# (examples/python_tour.py). Needs Debian's python3 with python3-numpy,
# python3-pytest and python3-pil (scripts/deps.sh); skipped, saying so,
# where they are missing, and under the sanitizers' build, whose library
# python3 cannot load without the sanitizer runtime preloaded.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
. "$root/tests/tap.sh"
tap_release_only "the sanitizers' library cannot be loaded into python3 without their runtime preloaded"
py=/usr/bin/python3
if ! "$py" -c 'import numpy, pytest, PIL' 2>/dev/null; then
    echo "1..0 # SKIP $py with numpy, pytest and PIL is not here (scripts/deps.sh installs python3-numpy python3-pytest python3-pil)"
    exit 0
fi
build=$(cd "$here/.." && pwd)
tap_tmpdir python
export VLP_LIBRARY="$build/libvlp.so.0" VLP_BIN="$build/vlp" VLP_TOOLS="$here/tools" VLP_REF_DIR="$root/tests/ref"
export PYTHONPATH="$root/python" PYTHONDONTWRITEBYTECODE=1 VLP_PROGRESS_SECONDS=0 OMP_NUM_THREADS=2
unset OPENBLAS_CORETYPE VLP_CPU # the library in python3 and vlp multiply alike (tests/test_train_api.sh)
cd "$tmp" || exit 1
"$py" -m pytest -v -p no:cacheprovider --rootdir "$tmp" "$root/python/tests" > pytest.log 2>&1
sed -n 's/^.*::\(test_[a-z0-9_]*\) PASSED.*/ok - \1/p; s/^.*::\(test_[a-z0-9_]*\) FAILED.*/not ok - \1/p' pytest.log > results
while IFS= read -r line; do
    case "$line" in
    ok*) tap_ok "pytest: ${line#ok - }" ;;
    *) tap_not_ok "pytest: ${line#not ok - }" pytest.log ;;
    esac
done < results
[ -s results ] || tap_not_ok "pytest ran no test" pytest.log
grep -q " failed\| error" pytest.log && ! grep -q "^not ok" results && tap_not_ok "pytest reported errors" pytest.log

mkdir img tour
"$here/tools/make_pairs" img 24 > pairs.tsv
printf 'not an image' > img/zz-broken.png
tap_check "examples/python_tour.py runs" tour.log "$py" "$root/examples/python_tour.py" \
    "$root/tests/ref/api_model.safetensors" "$root/tests/ref/api_merges.txt" img pairs.tsv tour
tap_grep "the tour embeds the folder and names the broken image" tour.log "embedded 24 of 25 images; skipped 1"
tap_if "the tour's index is written as vlp embed writes one" tour.log \
    sh -c '[ -s tour/images.npy ] && [ "$(wc -l < tour/images.paths.txt)" = 24 ]'
tap_grep "the tour trains and evaluates" tour.log "val i2t R@1 "
tap_end
