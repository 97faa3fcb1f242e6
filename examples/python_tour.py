#!/usr/bin/env python3
"""The tour of docs/python.md, runnable: embed a folder of images, label
them zero-shot, search them by text, train a few steps on a TSV of pairs
and evaluate. Run by tests/test_python.sh (make test).

usage: python3 examples/python_tour.py MODEL.safetensors MERGES IMAGE_DIR PAIRS.tsv OUT_DIR
"""
import os
import sys

import vlp


def main(model_path, merges, image_dir, pairs, out):
    print(vlp.system_info())
    m = vlp.load(model_path, vocab=merges)
    print(m.info["description"])

    # embed a folder: a bad image is skipped and named, not fatal
    paths = sorted(os.path.join(image_dir, f) for f in os.listdir(image_dir))
    emb, ok, errors = m.embed_images(paths, on_error="skip")
    kept = [p for p, good in zip(paths, ok) if good]
    print(f"embedded {len(kept)} of {len(paths)} images; skipped {len(errors)}")
    for i, why in errors.items():
        print(f"  skipped {paths[i]}: {why}")

    # zero-shot labels with a prompt ensemble
    labels = ["red", "green", "blue"]
    probs = m.classify(kept[:3], labels, templates=["a {} square", "a photo of something {}"])
    for p, row in zip(kept, probs):
        print(f"{os.path.basename(p)}: {labels[row.argmax()]} ({row.max():.3f})")

    # search by text, and save the index as vlp embed writes one
    index = vlp.Index(emb, keys=kept)
    scores, rows = index.search(m.embed_texts(["a red square"]), k=3)
    for s, key in zip(scores[0], index.keys_of(rows[0])):
        print(f"{s:.4f}\t{key}")
    index.save(os.path.join(out, "images.npy"))

    # train a few steps through the library, then evaluate
    result = vlp.train(train_data=pairs, val_data=pairs, out=os.path.join(out, "run"), steps=4, batch=8,
                       warmup=1, tokenizer_merges=60, workers=1,
                       progress=lambda p: print(f"step {p['step']}/{p['steps']} loss {p['loss']:.4f}"))
    print(f"val i2t R@1 {result['val']['i2t_r1']:.4f} over {result['val']['images']} images")
    m.close()


if __name__ == "__main__":
    if len(sys.argv) != 6:
        sys.exit(__doc__.strip().splitlines()[-1])
    main(*sys.argv[1:])
