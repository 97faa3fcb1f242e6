"""The Python package against the CLI and the C library (run by
tests/test_python.sh under `make test`, with python3-pytest):
embeddings equal `vlp embed`'s .npy bit for bit (paths, PIL images of every
mode, uint8 arrays); training equals `vlp train`'s losses and checkpoint bit
for bit; search equals a brute force; bad arguments raise the right
exception with vlp's message; 1,000 load/free cycles do not grow the
process. Environment: VLP_BIN (the vlp the package's library was built
with), VLP_TOOLS (tests/tools' programs), VLP_REF_DIR (tests/ref)."""
import os
import resource
import subprocess
import threading
import tracemalloc

import numpy as np
import pytest

import vlp

REF = os.environ.get("VLP_REF_DIR", os.path.join(os.path.dirname(__file__), "../../tests/ref"))
VLP = os.environ["VLP_BIN"]
TOOLS = os.environ["VLP_TOOLS"]
MODEL = os.path.join(REF, "api_model.safetensors")
VOCAB = os.path.join(REF, "api_merges.txt")
MODES = os.path.join(REF, "modes")
ENV = dict(os.environ, VLP_PROGRESS_SECONDS="0", OMP_NUM_THREADS="2")


def cli(*args, cwd=None):
    r = subprocess.run([VLP, *args], cwd=cwd, env=ENV, capture_output=True, text=True)
    assert r.returncode in (0, 3), f"vlp {' '.join(args)}: exit {r.returncode}\n{r.stderr}"
    return r


def mode_images():
    with open(os.path.join(MODES, "MANIFEST")) as f:
        return [os.path.join(MODES, line.split()[0]) for line in f if line.strip() and not line.startswith("#")]


@pytest.fixture(scope="module")
def model():
    with vlp.load(MODEL, vocab=VOCAB, threads=2) as m:
        yield m


def test_info(model):
    info = model.info
    assert info["embed_dim"] == 16 and info["image_size"] == 32 and info["context_length"] == 12
    assert info["parameters"] > 1000 and info["precision"] == "fp32" and not info["captions"]
    assert "GELU" in info["description"] and info["system"].startswith("vlp " + vlp.__version__)
    assert info["config"]["embed_dim"] == 16 and info["config"]["vision_cfg"]["image_size"] == 32


def test_images_equal_cli(model, tmp_path):
    """every mode's image, by path, as a PIL image and as an array: the CLI's bits"""
    paths = mode_images()
    (tmp_path / "list.txt").write_text("".join(p + "\n" for p in paths))
    cli("embed", "--model", MODEL, "--vocab", VOCAB, "--threads", "2", "--images", str(tmp_path / "list.txt"),
        "--out", str(tmp_path / "e.npy"))
    want = np.load(tmp_path / "e.npy")
    assert want.shape == (len(paths), 16)
    assert np.array_equal(model.embed_images(paths), want)
    from PIL import Image
    pil = []
    for p in paths:
        im = Image.open(p)
        im.seek(0)
        im.load()
        pil.append(im)
    got = model.embed_images(pil)
    same = [os.path.basename(p) for p, a, b in zip(paths, got, want) if np.array_equal(a, b)]
    assert len(same) == len(paths), f"as PIL images, differ: {sorted(set(map(os.path.basename, paths)) - set(same))}"
    rgb = [p for p in paths if Image.open(p).mode == "RGB"]
    arrays = [np.asarray(Image.open(p)) for p in rgb]
    assert np.array_equal(model.embed_images(arrays), model.embed_images(rgb))
    px = np.stack([model.preprocess(p) for p in paths[:5]])
    assert np.array_equal(model.embed_images(px), want[:5])


def test_texts_equal_cli(model, tmp_path):
    texts = ["a cat", "A photo of THE dog, then the end!", "café ☕", "x" * 300]
    (tmp_path / "t.txt").write_text("".join(t + "\n" for t in texts))
    cli("embed", "--model", MODEL, "--vocab", VOCAB, "--threads", "2", "--texts", str(tmp_path / "t.txt"),
        "--out", str(tmp_path / "t.npy"))
    assert np.array_equal(model.embed_texts(texts), np.load(tmp_path / "t.npy"))
    ids = model.tokenize(["the cat"])
    assert ids.shape == (1, 12) and ids.dtype == np.int32 and ids[0, 0] != 0


def test_skip_and_errors(model, tmp_path):
    good = mode_images()[:3]
    (tmp_path / "cut.png").write_bytes(open(good[0], "rb").read()[:60])
    (tmp_path / "text.jpg").write_text("not an image")
    paths = [good[0], str(tmp_path / "cut.png"), good[1], str(tmp_path / "missing.png"), str(tmp_path / "text.jpg"),
             good[2]]
    emb, ok, errors = model.embed_images(paths, on_error="skip")
    assert emb.shape == (3, 16) and list(ok) == [True, False, True, False, False, True]
    assert sorted(errors) == [1, 3, 4] and "cut.png" in errors[1] and "missing.png" in errors[3]
    assert np.array_equal(emb, model.embed_images(good))
    with pytest.raises(vlp.VlpIOError, match="missing.png"):
        model.embed_images(paths[2:4])
    with pytest.raises(vlp.VlpError, match="text.jpg: not a JPEG, PNG, WebP, GIF, TIFF or BMP image"):
        model.embed_images([paths[4]])
    with pytest.raises(vlp.VlpIOError, match="nowhere.safetensors"):
        vlp.load(str(tmp_path / "nowhere.safetensors"))
    with pytest.raises(vlp.VlpArgumentError, match="precision is 'fp64'"):
        vlp.load(MODEL, precision="fp64")
    with pytest.raises(vlp.VlpArgumentError, match="shape"):
        model.embed_images(np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(vlp.VlpArgumentError, match="on_error"):
        model.embed_images(good, on_error="ignore")
    with pytest.raises(vlp.VlpFormatError):
        vlp.load(good[0])  # a PNG is no model
    m = vlp.load(MODEL, vocab=VOCAB)
    m.close()
    with pytest.raises(vlp.VlpArgumentError, match="closed"):
        m.embed_texts(["x"])


def test_classify(model, tmp_path):
    img = mode_images()[0]
    p = model.classify([img, img], ["red", "green", "blue"], templates=["a {} image"])
    assert p.shape == (2, 3) and np.allclose(p.sum(1), 1) and np.array_equal(p[0], p[1])
    r = cli("classify", "--model", MODEL, "--vocab", VOCAB, "--image", img, "--labels", "red,green,blue",
            "--templates", str(_write(tmp_path / "tpl.txt", "a {} image\n")))
    want = {line.split("\t")[1]: float(line.split("\t")[0]) for line in r.stdout.splitlines()}
    for c, name in enumerate(["red", "green", "blue"]):
        assert abs(p[0, c] - want[name]) <= 5e-5
    assert vlp.load_templates("default") == ["a photo of a {}."]
    with vlp.load(MODEL, vocab=VOCAB, normalize=False) as raw:  # unnormalised embeddings: the same probabilities
        assert np.allclose(raw.classify([img], ["red", "green", "blue"], templates=["a {} image"])[0], p[0],
                           atol=1e-6)
    with pytest.raises(vlp.VlpError, match="templates 'no-such-set'"):
        vlp.load_templates("no-such-set")


def _write(path, text):
    path.write_text(text)
    return path


def test_index(model, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 16)).astype(np.float32)
    q = rng.normal(size=(7, 16)).astype(np.float32)
    ix = vlp.Index(x, keys=[f"k{i}" for i in range(5000)])
    scores, rows = ix.search(q, k=4)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    full = qn.astype(np.float64) @ xn.T.astype(np.float64)
    assert np.array_equal(rows, np.argsort(-full, axis=1, kind="stable")[:, :4])
    assert np.allclose(scores, np.take_along_axis(full, rows, 1), atol=1e-5)
    assert ix.keys_of(rows[0])[0] == f"k{rows[0, 0]}"
    ix.save(tmp_path / "ix")
    back = vlp.Index.load(tmp_path / "ix.npy")
    assert back.keys == ix.keys and np.array_equal(back.embeddings, x)
    # what vlp embed writes: the .npy and OUT.paths.txt, read back as an index
    paths = mode_images()[:6]
    (tmp_path / "l.txt").write_text("".join(p + "\n" for p in paths))
    cli("embed", "--model", MODEL, "--vocab", VOCAB, "--images", str(tmp_path / "l.txt"), "--out",
        str(tmp_path / "emb.npy"))
    e = vlp.Index.load(tmp_path / "emb.npy")
    s, r = e.search(model.embed_images([paths[2]])[0], k=1)
    assert e.keys_of(r) == [paths[2]] and abs(s[0] - 1) < 1e-5
    odd = vlp.Index(x[:3], keys=["a\rb.png", "caf\udce9.png", "plain"])  # a \r and a non-UTF-8 byte in paths
    odd.save(tmp_path / "odd")
    assert vlp.Index.load(tmp_path / "odd.npy").keys == odd.keys
    small = vlp.Index(x[:2])
    s, r = small.search(q[0], k=3)
    assert r[2] == -1 and np.isinf(s[2])
    with pytest.raises(vlp.VlpArgumentError, match="rows of 16"):
        ix.search(np.zeros(8, np.float32))


def test_train_equals_cli(tmp_path, monkeypatch):
    _pairs(tmp_path)
    lines = (tmp_path / "pairs.tsv").read_text().splitlines(True)
    (tmp_path / "val.tsv").write_text("".join(lines[:17]))
    cli("train", "--train-data", "pairs.tsv", "--val-data", "val.tsv", "--out", "cli", "--batch", "8", "--warmup",
        "1", "--tokenizer-merges", "60", "--workers", "1", "--threads", "2", "--steps", "6", cwd=tmp_path)
    monkeypatch.chdir(tmp_path)
    lines, progress = [], []
    result = vlp.train(train_data="pairs.tsv", val_data="val.tsv", out="py", batch=8, warmup=1,
                       tokenizer_merges=60, workers=1, steps=6, on_message=lines.append, progress=progress.append)
    assert [p["step"] for p in progress] == [1, 2, 3, 4, 5, 6]
    assert any("tokenizer: learnt" in x for x in lines)
    assert result["step"] == 6 and result["val"]["images"] == 16

    def losses(run):  # each step's loss as written (tests/tap.sh's metrics_losses)
        import re
        return re.findall(r'^\{"step":(\d+),"loss":([^,]*),', open(f"{run}/metrics.jsonl").read(), re.M)
    assert len(losses("cli")) == 6 and losses("cli") == losses("py")
    assert open("cli/latest.safetensors", "rb").read() == open("py/latest.safetensors", "rb").read()
    with pytest.raises(vlp.VlpArgumentError, match="bogus"):
        vlp.Trainer(bogus=1)
    with vlp.Trainer(train_data="pairs.tsv", out="none", steps=1, batch=8, tokenizer_merges=60, workers=1,
                     val_data=None, resume=None) as t:  # None: the command's default
        assert t.steps_done == 0
    with pytest.raises(vlp.VlpArgumentError, match="--lr"):
        vlp.Trainer(train_data="pairs.tsv", out="x", lr="fast")


def _pairs(tmp_path, n=32):
    (tmp_path / "img").mkdir(exist_ok=True)
    with open(tmp_path / "pairs.tsv", "w") as f:
        subprocess.run([os.path.join(TOOLS, "make_pairs"), "img", str(n)], cwd=tmp_path, check=True, stdout=f)
    return tmp_path / "pairs.tsv"


def test_evaluate_equals_cli(model, tmp_path):
    """vlp eval's figures, from the same C function: zero-shot, retrieval, the probe; a bad image counted"""
    pairs = _pairs(tmp_path)
    (tmp_path / "img" / "broken.png").write_text("not an image")
    with open(pairs, "a") as f:  # a row whose image does not decode, one whose image is missing
        f.write("img/broken.png\ta broken square\tred\nimg/missing.png\ta missing square\tred\n")
    r = cli("eval", "--model", MODEL, "--vocab", VOCAB, "--threads", "2", "--data", str(pairs), "--label-key",
            "colour", cwd=tmp_path)
    want = {}
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            kv = dict(x.split("=") for x in line.split()[1:])
            name = kv.pop("name")
            want[name] = {k: float(v) for k, v in kv.items()}
    warnings = []
    got = model.evaluate(pairs, label_key="colour", on_warning=warnings.append)
    assert got["images"] == 32 and got["undecodable"] == 1 and "broken.png" in got["first_undecodable"]
    assert got["skipped_rows"] == 1 and "missing.png" in got["first_skipped"]
    assert len(warnings) == 2 and any("broken.png" in w for w in warnings)
    z, t, p = got["zeroshot"], got["retrieval"], got["linear_probe"]
    for k in ("top1", "top5", "balanced", "majority"):
        assert round(z[k], 4) == want["zeroshot"][k], k
    assert z["classes"] == want["zeroshot"]["classes"] and z["images"] == want["zeroshot"]["images"]
    assert sum(c["images"] for c in z["per_class"].values()) == z["images"]
    for k in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10"):
        assert round(t[k], 4) == want["retrieval"][k], k
    assert round(p["test_acc"], 4) == want["linear_probe"]["test_acc"]
    only = model.evaluate(pairs, label_key="colour", zeroshot=True, classes=["red", "green"],
                          templates=["a {} square"])
    assert set(only) >= {"zeroshot"} and "retrieval" not in only and only["zeroshot"]["classes"] == 2
    with pytest.raises(vlp.VlpArgumentError, match="label"):
        model.evaluate(pairs, linear_probe=True)
    with pytest.raises(vlp.VlpError, match="broken.png"):
        model.evaluate(pairs, label_key="colour", on_error="stop")
    with pytest.raises(vlp.VlpIOError, match="nowhere.tsv"):
        model.evaluate(tmp_path / "nowhere.tsv")


def test_match_and_rerank_equal_cli(model, tmp_path):
    """Model.match equals vlp match's TSV; evaluate(rerank=K) equals vlp eval --rerank K; a model without a
    fusion encoder raises"""
    pairs = _pairs(tmp_path)
    cli("train", "--train-data", "pairs.tsv", "--out", "fus", "--model-config", "tiny-fusion", "--objective",
        "itc-itm-mlm", "--batch", "8", "--warmup", "1", "--tokenizer-merges", "60", "--workers", "1", "--threads",
        "2", "--steps", "2", cwd=tmp_path)
    rows = [line.split("\t") for line in pairs.read_text().splitlines()[1:]]
    images, texts = [str(tmp_path / r[0]) for r in rows[:6]], [r[1] for r in rows[:4]]
    (tmp_path / "images.txt").write_text("".join(x + "\n" for x in images))
    (tmp_path / "texts.txt").write_text("".join(x + "\n" for x in texts))
    weights = str(tmp_path / "fus" / "latest.safetensors")
    out = cli("match", "--model", weights, "--images", "images.txt", "--texts", "texts.txt", cwd=tmp_path).stdout
    want = np.array([float(line.split("\t")[2]) for line in out.splitlines()[1:]]).reshape(6, 4)
    with vlp.load(weights, threads=2) as m:
        assert m.info["matches"]
        got = m.match(images, texts)
        assert got.shape == (6, 4) and np.array_equal(np.round(got.astype(np.float64), 6), want)
        diag = m.match(images[:4], texts, pairs=True)
        assert diag.shape == (4,) and np.allclose(diag, np.diag(got[:4]), atol=1e-6)
        r = cli("eval", "--model", weights, "--data", str(pairs), "--retrieval", "--rerank", "8", cwd=tmp_path)
        line = next(x for x in r.stdout.splitlines() if x.startswith("RESULT name=retrieval_rerank "))
        kv = dict(x.split("=") for x in line.split()[2:])
        ev = m.evaluate(pairs, retrieval=True, rerank=8)
        assert ev["retrieval_rerank"]["k"] == 8 == int(kv.pop("k"))
        for k, v in kv.items():
            assert round(ev["retrieval_rerank"][k], 4) == float(v), k
        with pytest.raises(vlp.VlpArgumentError, match="pairs=True"):
            m.match(images, texts, pairs=True)
    assert not model.info["matches"]
    with pytest.raises(vlp.VlpUnsupportedError, match="no fusion encoder"):
        model.match(images, texts)
    with pytest.raises(vlp.VlpArgumentError, match="fusion encoder"):
        model.evaluate(pairs, rerank=4)


def test_learnt_prompts_equal_cli(model, tmp_path):
    """prompts from vlp adapt: classify and evaluate as `vlp classify/eval --prompts`"""
    pairs = _pairs(tmp_path, 64)
    base = ["--model", MODEL, "--vocab", VOCAB, "--threads", "2"]
    cli("adapt", "--method", "coop", *base, "--data", str(pairs), "--label-key", "colour", "--shots", "2",
        "--epochs", "2", "--n-ctx", "2", "--out", str(tmp_path / "coop.safetensors"), cwd=tmp_path)
    img = str(tmp_path / "img" / "img003.png")
    r = cli("classify", *base, "--image", img, "--prompts", str(tmp_path / "coop.safetensors"))
    want = {line.split("\t")[1]: float(line.split("\t")[0]) for line in r.stdout.splitlines()}
    with model.load_prompts(tmp_path / "coop.safetensors") as p:
        assert "coop" in p.description and sorted(p.classes) == sorted(want)
        got = p.classify([img])[0]
        for c, name in enumerate(p.classes):
            assert abs(got[c] - want[name]) <= 5e-5, name
        e = cli("eval", *base, "--data", str(pairs), "--label-key", "colour", "--prompts",
                str(tmp_path / "coop.safetensors"))
        line = next(x for x in e.stdout.splitlines() if x.startswith("RESULT name=zeroshot"))
        top1 = float(line.split("top1=")[1].split()[0])
        z = model.evaluate(pairs, label_key="colour", prompts=p)["zeroshot"]
        assert round(z["top1"], 4) == top1 and z["classes"] == 8
        with pytest.raises(vlp.VlpArgumentError, match="zero-shot"):
            model.evaluate(pairs, label_key="colour", prompts=p, retrieval=True)
        p.set_classes(["red", "blue"])  # evaluate sets the set's classes, then gives these back
        model.evaluate(pairs, label_key="colour", prompts=p)
        assert p.classes == ["red", "blue"]
    with pytest.raises(vlp.VlpArgumentError, match="closed"):
        p.classify([img])
    with pytest.raises(vlp.VlpError, match="nowhere"):
        model.load_prompts(tmp_path / "nowhere.safetensors")
    m2 = vlp.load(MODEL, vocab=VOCAB)
    q = m2.load_prompts(tmp_path / "coop.safetensors")
    m2.close()  # frees its prompts first
    with pytest.raises(vlp.VlpArgumentError, match="closed"):
        q.classify([img])


def test_threads_share_nothing(model):
    """two models in two threads at once (the GIL is released in the library): each gets its own answer"""
    paths = mode_images()
    want = model.embed_images(paths)
    got = {}

    def run(i):
        with vlp.load(MODEL, vocab=VOCAB) as m:
            got[i] = m.embed_images(paths)
    ts = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert np.array_equal(got[0], want) and np.array_equal(got[1], want)


def interrupted(tmp_path, setup, call, wait):
    """a python3 that runs `call` on a model after `setup`, sent SIGINT `wait`
    seconds in: it must raise KeyboardInterrupt within 10 s, its model still usable"""
    import signal
    import sys
    import time
    script = tmp_path / "long.py"
    script.write_text(f"""
import sys, vlp
m = vlp.load({MODEL!r}, vocab={VOCAB!r})
{setup}
print("ready", flush=True)
try:
    {call}
    print("finished", flush=True)
except KeyboardInterrupt:
    print("interrupted", m.embed_texts(["still usable"]).shape, flush=True)
    sys.exit(130)
""")
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         cwd=tmp_path)
    assert p.stdout.readline().strip() == "ready"
    time.sleep(wait)
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 130 and "interrupted (1, 16)" in out, out
    assert time.monotonic() - t0 < 10


def test_ctrl_c_during_evaluate(tmp_path):
    """SIGINT during one long evaluate call: KeyboardInterrupt after the batch it lands in"""
    pairs = _pairs(tmp_path)
    lines = pairs.read_text().splitlines(True)
    (tmp_path / "big.tsv").write_text(lines[0] + "".join(lines[1:]) * 4000)
    interrupted(tmp_path, "", f"m.evaluate({str(tmp_path / 'big.tsv')!r})", 1.0)


def test_ctrl_c_between_batches(tmp_path):
    """SIGINT during a long embed_images: KeyboardInterrupt within a batch"""
    interrupted(tmp_path, f"paths = {mode_images()!r} * 3000", "m.embed_images(paths)", 0.5)


def test_no_leak_over_1000_loads():
    def rss_kb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() // 1024
    for _ in range(20):  # warm: allocator pools, the library's first load
        vlp.load(MODEL, vocab=VOCAB).close()
    import gc
    gc.collect()
    tracemalloc.start()
    before, py0 = rss_kb(), tracemalloc.get_traced_memory()[0]
    for _ in range(1000):
        m = vlp.load(MODEL, vocab=VOCAB)
        m.embed_texts(["a cat"])
        m.close()
    gc.collect()
    grown, py1 = rss_kb() - before, tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    # one model holds ~100 KB of weights and buffers: 1,000 leaked would be ~100 MB
    assert grown < 4096, f"RSS grew {grown} KB over 1,000 load/free cycles"
    assert py1 - py0 < 64 * 1024, f"Python objects grew {py1 - py0} bytes"
