#!/bin/sh
# Python's embed_images against vlp embed on the same 1,000 images (320x240
# JPEGs and PNGs), the same model (configs/tiny, trained one step so that it
# is a vlp checkpoint) and thread count: both run the library's
# vlp_encode_image_files_skipping, Python a batch a call (so Ctrl-C lands
# between batches). Prints each side's images/s as a median of REPS runs, the
# ratio, and a RESULT line; the embeddings are checked equal bit for bit.
#   sh bench/python_embed.sh [BUILD_DIR] [REPS]     (needs python3-numpy, python3-pil)
set -eu
dir=$(cd "${1:-build/release}" && pwd)
reps=${2:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
py=/usr/bin/python3
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vlp-pybench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
cd "$tmp"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} VLP_PROGRESS_SECONDS=0
unset OPENBLAS_CORETYPE VLP_CPU # the library in python3 and vlp on the same kernels
mkdir img
"$py" - <<'PY'
import numpy as np
from PIL import Image
rng = np.random.default_rng(0)
with open("pairs.tsv", "w") as tsv, open("list.txt", "w") as lst:
    tsv.write("filepath\ttitle\n")
    for i in range(1000):
        y, x = np.mgrid[0:240, 0:320]
        a = np.stack([(x + 7 * i) % 256, (y * 3 + i) % 256, (x + y) % 256], -1) + rng.integers(0, 40, (240, 320, 3))
        im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
        name = f"img/{i:04d}.{'jpg' if i % 2 else 'png'}"
        im.save(name, quality=90) if i % 2 else im.save(name)
        tsv.write(f"{name}\ta picture number {i}\n")
        lst.write(f"{name}\n")
PY
"$dir/vlp" train --model-config tiny --train-data pairs.tsv --out run --steps 1 --batch 8 --warmup 1 \
    --tokenizer-merges 60 --workers 1 > train.log 2>&1 || { cat train.log; exit 1; }
cat > embed.py <<'PY'
import sys, numpy as np, vlp
paths = open("list.txt").read().splitlines()
m = vlp.load("run/latest.safetensors", threads=int(sys.argv[1]))
np.save(sys.argv[2], m.embed_images(paths))
PY
export VLP_LIBRARY="$dir/libvlp.so.0" PYTHONPATH="$root/python"
th=$(nproc)
cli_t=; py_t=
for r in $(seq "$reps"); do # alternated, A B A B: drift hits both
    s=$(date +%s.%N); "$dir/vlp" embed --model run/latest.safetensors --threads "$th" --images list.txt --out cli.npy 2>/dev/null
    e=$(date +%s.%N); cli_t="$cli_t $(echo "$e - $s" | bc)"
    s=$(date +%s.%N); "$py" embed.py "$th" py.npy
    e=$(date +%s.%N); py_t="$py_t $(echo "$e - $s" | bc)"
done
isa=$("$dir/vlp" info 2>&1 | sed -n 's/^system_info: vlp .* isa = \([^ ]*\) .*/\1/p' | head -1)
"$dir/vlp" info 2>&1 | head -1
"$py" - "$cli_t" "$py_t" "$th" "$isa" <<'PY'
import sys, numpy as np
cli = sorted(float(x) for x in sys.argv[1].split()); py = sorted(float(x) for x in sys.argv[2].split())
same = np.array_equal(np.load("cli.npy"), np.load("py.npy"))
mc, mp = cli[len(cli) // 2], py[len(py) // 2]
print(f"1000 images, {sys.argv[3]} threads, median of {len(cli)}: vlp embed {1000 / mc:.1f} images/s "
      f"({mc:.2f} s), python embed_images {1000 / mp:.1f} images/s ({mp:.2f} s, import and load included); "
      f"embeddings equal: {same}")
print(f"RESULT name=python-embed-images isa={sys.argv[4]} vlp={1000 / mc:.1f} python={1000 / mp:.1f} "
      f"ratio={mc / mp:.3f} same={same}")
sys.exit(0 if same else 1)
PY
