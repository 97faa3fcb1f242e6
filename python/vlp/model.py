"""A loaded model: embeddings of images and texts, zero-shot labels,
captions, through the library's model API (include/vlp.h)."""
from __future__ import annotations

import ctypes
import os
from typing import Any, Sequence, Union

import numpy as np

from . import _lib
from ._lib import VlpArgumentError, check, encode, lib, strings

PathLike = Union[str, bytes, "os.PathLike[str]"]
ImageLike = Any  # a path, a PIL.Image.Image, or a numpy array
_PRECISIONS = ("fp32", "bf16", "int8")
_ALPHA = {"model": 0, "white": 1, "drop": 2}
# Pillow's modes the library resizes as Pillow does (include/vlp.h VLP_IMAGE_*)
_MODES = {"RGB": 0, "RGBA": 1, "L": 2, "LA": 3, "1": 4, "P": 5, "CMYK": 6, "I": 7}


def _locked(method):
    """one call at a time into a model (its buffers are shared by every call): a Model
    method, or a Prompts method (its model's lock)"""
    import functools

    @functools.wraps(method)
    def call(self, *args, **kw):
        lock = getattr(self, "_lock", None) or getattr(getattr(self, "model", None), "_lock", None)
        if lock is None:
            return method(self, *args, **kw)
        with lock:
            return method(self, *args, **kw)
    return call


def _as_float(a):
    return ctypes.cast(a.ctypes.data, _lib.c_float_p)


class Model(_lib.Closable):
    """A CLIP-family model, loaded from weights (.safetensors: open_clip,
    OpenAI or HF CLIPModel naming, or a vlp run's checkpoint).

    config: an open_clip architecture name ("ViT-B-16") or a JSON file; None
    reads it from the file's metadata, else infers it from the shapes.
    precision: "fp32" (PyTorch's numbers), "bf16" (matmuls in bfloat16 where
    the CPU has AVX512-BF16) or "int8" (the transformer blocks quantized, as
    `vlp quantize`). vocab: the BPE merges (None: the model's, else OpenAI's).
    batch: images or texts a forward pass. normalize: L2-normalised
    embeddings. alpha: "model" (the model's rule), "white" or "drop".
    threads: the library's thread count (None leaves it as it is).
    The model is freed by close(), by a `with` block's end, or when collected."""

    def __init__(self, path: PathLike, config: str | None = None, precision: str = "fp32",
                 vocab: PathLike | None = None, batch: int = 32, normalize: bool = True, alpha: str = "model",
                 threads: int | None = None) -> None:
        if precision not in _PRECISIONS:
            raise VlpArgumentError(f"precision is '{precision}'; it takes one of {', '.join(_PRECISIONS)}")
        if alpha not in _ALPHA:
            raise VlpArgumentError(f"alpha is '{alpha}'; it takes one of {', '.join(_ALPHA)}")
        if not isinstance(batch, int) or batch < 1:
            raise VlpArgumentError(f"batch is {batch!r}; it takes a whole number >= 1")
        import threading
        self._lock = threading.RLock()  # one call at a time into a model: its buffers are shared
        L = lib()
        if threads is not None:
            L.vlp_set_threads(int(threads))
        o = L.vlp_model_opts_default()
        keep = [encode(vocab) if vocab else None, encode(config) if config else None]
        o.vocab, o.model_config = keep
        o.batch, o.normalize, o.bf16, o.alpha = batch, bool(normalize), precision == "bf16", _ALPHA[alpha]
        self._h = ctypes.c_void_p()
        err = _lib.Error()
        check(L.vlp_model_load(ctypes.byref(self._h), encode(path), ctypes.byref(o), ctypes.byref(err)), err)
        self.path, self.batch = os.fspath(path), batch
        if precision == "int8" and not L.vlp_model_is_int8(self._h):
            try:
                check(L.vlp_model_quantize(self._h, ctypes.byref(err)), err)
            except BaseException:
                self.close()
                raise
        import weakref
        self._prompts = weakref.WeakSet()  # freed before the model (the library's rule)
        self.embed_dim = L.vlp_model_embed_dim(self._h)
        self.image_size = L.vlp_model_image_size(self._h)
        self.context_length = L.vlp_model_context_length(self._h)

    # ---- lifetime ----
    @_locked
    def close(self) -> None:
        """free the model, and the learnt prompts loaded on it (further calls raise)"""
        if getattr(self, "_h", None):
            for p in list(getattr(self, "_prompts", ())):
                p.close()
            lib().vlp_model_free(self._h)
            self._h = None

    def _handle(self):
        if not self._h:
            raise VlpArgumentError("the model was closed")
        return self._h

    # ---- what it is ----
    @property
    @_locked
    def info(self) -> dict:
        """dict: the description line, the config (open_clip's fields),
        embed_dim, image_size, context_length, parameters, precision, whether
        it captions, the load's warning, and the library's system line (its
        kernels' instruction-set level)"""
        import json
        L, h = lib(), self._handle()
        buf, err = ctypes.create_string_buffer(16384), _lib.Error()
        check(L.vlp_model_config_json(h, buf, len(buf), ctypes.byref(err)), err)
        config = json.loads(buf.value.decode())
        desc = L.vlp_model_describe(h, buf, len(buf)).decode()
        warning = L.vlp_model_warning(h)
        return {"description": desc, "config": config, "embed_dim": self.embed_dim, "image_size": self.image_size,
                "context_length": self.context_length, "parameters": L.vlp_model_parameter_count(h),
                "precision": "int8" if L.vlp_model_is_int8(h) else "bf16" if "; bf16 matmuls" in desc else "fp32",
                "captions": bool(L.vlp_model_has_decoder(h)), "matches": bool(L.vlp_model_has_fusion(h)),
                "warning": warning.decode() if warning else None, "system": system_info()}

    def __repr__(self):
        return f"vlp.Model({self.path!r}: {self.info['description']})" if self._h else "vlp.Model(closed)"

    # ---- texts ----
    @_locked
    def tokenize(self, texts: str | Sequence[str]) -> np.ndarray:
        """token ids (n, context_length) int32, padded as open_clip's tokenizer"""
        texts = [texts] if isinstance(texts, str) else list(texts)
        T = self.context_length
        out = np.zeros((len(texts), T), np.int32)
        h = self._handle()
        for i, t in enumerate(texts):
            lib().vlp_tokenize(h, encode(t), ctypes.cast(out[i].ctypes.data, _lib.c_int_p), T)
        return out

    @_locked
    def embed_texts(self, texts: str | Sequence[str]) -> np.ndarray:
        """embeddings (n, embed_dim) float32 of a list of texts"""
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = np.empty((len(texts), self.embed_dim), np.float32)
        err, h = _lib.Error(), self._handle()
        for i0 in range(0, len(texts), self.batch):  # a batch a call: Ctrl-C between them
            arr, keep = strings(texts[i0:i0 + self.batch])
            check(lib().vlp_encode_texts(h, arr, len(keep), _as_float(out[i0:]), ctypes.byref(err)), err)
        return out

    # ---- images ----
    @_locked
    def preprocess(self, image: ImageLike) -> np.ndarray:
        """the model's eval transform of one image (a path, a PIL image or a
        uint8 array (H, W), (H, W, 3), (H, W, 4)) → float32 (3, S, S)"""
        S = self.image_size
        out = np.empty((3, S, S), np.float32)
        err, h = _lib.Error(), self._handle()
        if isinstance(image, (str, bytes, os.PathLike)):
            check(lib().vlp_preprocess_image_file(h, encode(image), _as_float(out), ctypes.byref(err)), err)
            return out
        px, mode, palette = _pixels(image)
        im = _lib.Image(px.shape[1], px.shape[0], mode, px.ctypes.data,
                        palette.ctypes.data if palette is not None else None)
        check(lib().vlp_preprocess_image(h, ctypes.byref(im), _as_float(out), ctypes.byref(err)), err)
        return out

    @_locked
    def embed_images(self, images: ImageLike | Sequence[ImageLike] | np.ndarray, on_error: str = "raise"):
        """embeddings (n, embed_dim) float32 of images: a list of paths, PIL
        images or uint8 arrays, or preprocessed pixels (n, 3, S, S) float32.

        Paths take the library's path of `vlp embed` (the same bits).
        on_error="raise": the first image that cannot be read raises, naming
        it. on_error="skip": such images are skipped and the result is
        (embeddings of those that could be read, ok: bool array of len(images),
        errors: {index: message})."""
        if on_error not in ("raise", "skip"):
            raise VlpArgumentError(f"on_error is '{on_error}'; it takes raise or skip")
        E, S, h = self.embed_dim, self.image_size, self._handle()
        err = _lib.Error()
        if isinstance(images, np.ndarray) and images.dtype != np.uint8:
            px = np.ascontiguousarray(images, np.float32)
            if px.ndim == 3:
                px = px[None]
            if px.shape[1:] != (3, S, S):
                raise VlpArgumentError(f"pixels of shape {images.shape}; the model takes (n, 3, {S}, {S})")
            out = np.empty((len(px), E), np.float32)
            for i0 in range(0, len(px), self.batch):
                b = min(self.batch, len(px) - i0)
                check(lib().vlp_encode_images(h, _as_float(px[i0:]), b, _as_float(out[i0:]), ctypes.byref(err)), err)
            return (out, np.ones(len(out), bool), {}) if on_error == "skip" else out
        images = [images] if isinstance(images, (str, bytes, os.PathLike, np.ndarray)) or _is_pil(images) \
            else list(images)
        n = len(images)
        out = np.empty((n, E), np.float32)
        ok = np.zeros(n, bool)
        errors, rows = {}, 0
        paths = all(isinstance(x, (str, bytes, os.PathLike)) for x in images)
        for i0 in range(0, n, self.batch):  # a batch a call: Ctrl-C between them
            part = images[i0:i0 + self.batch]
            if paths:
                arr, keep = strings(part)
                got = ctypes.c_int(0)
                okb = (ctypes.c_bool * len(part))()
                skipped = (_lib.Error * len(part))()
                check(lib().vlp_encode_image_files_skipping(h, arr, len(part), _as_float(out[rows:]), okb,
                                                            ctypes.byref(got), skipped, ctypes.byref(err)), err)
                for j in range(len(part)):
                    ok[i0 + j] = okb[j]
                    if not okb[j]:
                        if on_error == "raise":
                            raise skipped[j].exception()
                        errors[i0 + j] = skipped[j].message.decode("utf-8", "replace")
                rows += got.value
            else:
                px = np.empty((len(part), 3, S, S), np.float32)
                b = 0
                for j, x in enumerate(part):
                    try:
                        px[b] = self.preprocess(x)
                    except _lib.VlpError as e:
                        if on_error == "raise" or isinstance(e, _lib.VlpMemoryError):
                            raise
                        errors[i0 + j] = e.message
                        continue
                    ok[i0 + j], b = True, b + 1
                if b:
                    check(lib().vlp_encode_images(h, _as_float(px), b, _as_float(out[rows:]), ctypes.byref(err)), err)
                rows += b
        return (out[:rows], ok, errors) if on_error == "skip" else out

    # ---- zero-shot ----
    @_locked
    def classify(self, images: ImageLike | Sequence[ImageLike], labels: str | Sequence[str],
                 templates: str | Sequence[str] | None = None) -> np.ndarray:
        """zero-shot probabilities (n, len(labels)) float64: each image against
        each label's prompt ensemble (templates: a list of strings with "{}",
        a set vlp ships by name ("default", "openai-imagenet") or a file; None:
        "default"), softmax of 100 x cosine, as `vlp classify`"""
        labels = [labels] if isinstance(labels, str) else list(labels)
        if not labels:
            raise VlpArgumentError("classify needs at least one label")
        tpl = load_templates(templates or "default") if not isinstance(templates, (list, tuple)) else list(templates)
        cls = np.empty((len(labels), self.embed_dim), np.float32)
        err = _lib.Error()
        la, lk = strings(labels)
        ta, tk = strings(tpl)
        check(lib().vlp_encode_classes(self._handle(), la, len(lk), ta, len(tk), _as_float(cls), ctypes.byref(err)),
              err)
        img = self.embed_images(images).astype(np.float64)
        img /= np.maximum(np.linalg.norm(img, axis=1, keepdims=True), 1e-12)  # also with normalize=False
        logits = 100.0 * (img @ cls.astype(np.float64).T)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    @_locked
    def match(self, images: ImageLike | Sequence[ImageLike], texts: str | Sequence[str],
              pairs: bool = False) -> np.ndarray:
        """image-text matching probabilities by the model's fusion encoder
        (ALBEF/BLIP's ITM head; a model with fusion_cfg, trained with
        --objective itc-itm-mlm): every image with every text → (n_images,
        n_texts) float32; pairs=True: image i with text i → (n,), as `vlp match`"""
        L, h = lib(), self._handle()
        if not L.vlp_model_has_fusion(h):
            raise _lib.VlpUnsupportedError("the model has no fusion encoder (its config has no fusion_cfg): no "
                                           "image-text matching head", _lib.UNSUPPORTED)
        images = [images] if isinstance(images, (str, bytes, os.PathLike)) or _is_pil(images) else list(images)
        texts = [texts] if isinstance(texts, str) else list(texts)
        if pairs and len(images) != len(texts):
            raise VlpArgumentError(f"pairs=True scores image i with text i, but there are {len(images)} images and "
                                   f"{len(texts)} texts")
        n = len(images)
        out = np.empty((n,) if pairs else (n, len(texts)), np.float32)
        err = _lib.Error()
        every = None if pairs else strings(texts)
        for i in range(0, n, 32):  # a call per 32 images: Ctrl-C comes between them
            px = np.stack([self.preprocess(x) for x in images[i:i + 32]])
            k = len(px)
            if pairs:
                ta, tk = strings(texts[i:i + k])
                idx = np.stack([np.arange(k), np.arange(k)], axis=1).astype(np.intc)
                part = np.empty(k, np.float32)
                check(L.vlp_itm_scores(h, _as_float(px), k, ta, k, idx.ctypes.data_as(_lib.c_int_p), k,
                                       _as_float(part), ctypes.byref(err)), err)
            else:
                ta, tk = every
                part = np.empty((k, len(texts)), np.float32)
                check(L.vlp_itm_scores(h, _as_float(px), k, ta, len(tk), None, 0, _as_float(part), ctypes.byref(err)),
                      err)
            out[i:i + k] = part
        return out

    # ---- learnt prompts ----
    @_locked
    def load_prompts(self, path: PathLike) -> "Prompts":
        """prompts `vlp adapt` learnt on this model (CoOp, CoCoOp, MaPLe or a
        linear probe; the file's hash of the weights is checked)"""
        return Prompts(self, path)

    # ---- evaluation ----
    @_locked
    def evaluate(self, data: PathLike, label_key: str | None = None, zeroshot: bool = False,
                 retrieval: bool = False, linear_probe: bool = False,
                 templates: str | Sequence[str] | None = None, classes: Sequence[str] | None = None,
                 image_key: str = "filepath", caption_key: str = "title", text_only: bool = False,
                 probe_test_fraction: float = 0.5, probe_l2: float = 1e-3, seed: int = 0,
                 on_error: str = "skip", on_warning=None, prompts: "Prompts | None" = None,
                 rerank: int = 0) -> dict:
        """what `vlp eval` measures on a set (.tsv/.csv, class folders or
        shards), in file order → dict. Without a task: retrieval, and with
        label_key zero-shot and the linear probe. templates: a list, a set vlp
        ships by name or a file (None: "a photo of a {}."). on_error="skip":
        an image that does not decode is counted ("undecodable") and named
        ("first_undecodable"); "stop" raises on it. on_warning(line): each
        skipped row or image. prompts: learnt prompts (load_prompts) in place
        of the templates, zero-shot only. rerank=K (a model with a fusion
        encoder): retrieval also with each query's top K re-ordered by the
        ITM probability ("retrieval_rerank"). Ctrl-C stops it after the batch
        it is in."""
        if on_error not in ("skip", "stop"):
            raise VlpArgumentError(f"on_error is '{on_error}'; it takes skip or stop")
        L = lib()
        o = L.vlp_eval_opts_default()
        keep = [encode(data), encode(image_key), encode(caption_key), encode(label_key) if label_key else None]
        o.data, o.image_key, o.caption_key, o.label_key = keep
        o.zeroshot, o.retrieval, o.linear_probe, o.text_only = zeroshot, retrieval, linear_probe, text_only
        if templates is not None:
            tpl = load_templates(templates) if isinstance(templates, (str, os.PathLike)) else list(templates)
            ta, tk = strings(tpl)
            keep += [ta, tk]
            o.templates, o.n_templates = ta, len(tk)
        if classes is not None:
            ca, ck = strings([classes] if isinstance(classes, str) else list(classes))
            keep += [ca, ck]
            o.classes, o.n_classes = ca, len(ck)
        o.probe_test_fraction, o.probe_l2, o.seed = probe_test_fraction, probe_l2, seed
        if prompts is not None:
            if prompts.model is not self:
                raise VlpArgumentError("the prompts were loaded on another model")
            o.prompts = prompts._handle()
        o.stop_on_bad, o.rerank = on_error == "stop", int(rerank)
        interrupted = []
        # one long call: Ctrl-C is noted by a handler of ours (run by Python when the
        # library calls progress back after a batch) and stops the pass there
        pf = _lib.PROGRESS_FN(lambda user, n: 1 if interrupted else 0)
        rf = _lib.PAIRS_FN(lambda user, n, total: 1 if interrupted else 0)
        wf = _lib.MESSAGE_FN(lambda user, line: on_warning(line.decode("utf-8", "replace"))) if on_warning else \
            _lib.MESSAGE_FN()
        o.progress, o.warn, o.rerank_progress = pf, wf, rf
        r, err = _lib.EvalResult(), _lib.Error()
        before = prompts.classes if prompts is not None else None
        try:
            with _sigint_noted(interrupted):
                rc = L.vlp_eval(self._handle(), ctypes.byref(o), ctypes.byref(r), ctypes.byref(err))
            if interrupted:
                raise KeyboardInterrupt
            check(rc, err)
            return _eval_dict(r)
        finally:
            L.vlp_eval_result_free(ctypes.byref(r))
            if before is not None and prompts.classes != before:  # evaluate set the set's classes
                prompts.set_classes(before)

    # ---- captions ----
    @_locked
    def caption(self, images: ImageLike | Sequence[ImageLike], beam: int = 1) -> list[tuple[str, float]]:
        """captions of images (paths, PIL images or arrays) by a CoCa model's
        decoder: a list of (text, mean token log-probability)"""
        L, h = lib(), self._handle()
        if not L.vlp_model_has_decoder(h):
            raise _lib.VlpUnsupportedError("the model has no text decoder (a CoCa model, vlp train --objective coca)",
                                           _lib.UNSUPPORTED)
        images = [images] if isinstance(images, (str, bytes, os.PathLike)) or _is_pil(images) else list(images)
        res = []
        for x in images:
            px = self.preprocess(x)
            txt = (ctypes.c_void_p * 1)()
            score = (ctypes.c_float * 1)()
            err = _lib.Error()
            check(L.vlp_caption_images(h, _as_float(px), 1, int(beam), txt, score, ctypes.byref(err)), err)
            res.append((ctypes.string_at(txt[0]).decode("utf-8", "replace"), float(score[0])))
            _lib.c_free(txt[0])
        return res


class _sigint_noted:
    """Ctrl-C during a long call into the library appended to `noted` rather
    than raised inside a callback (where ctypes would swallow it); only in the
    main thread, and only over Python's own handler"""

    def __init__(self, noted):
        self.noted, self.old = noted, None

    def __enter__(self):
        import signal
        import threading
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.old = signal.signal(signal.SIGINT, lambda sig, frame: self.noted.append(sig))

    def __exit__(self, *exc):
        import signal
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)


class Prompts(_lib.Closable):
    """A classifier `vlp adapt` learnt on a model: its classes, and
    classify(images) → probabilities (n, classes), as `vlp classify
    --prompts`. Freed by close(), a `with` block's end, or its model's close()."""

    def __init__(self, model: Model, path: PathLike) -> None:
        self.model, self._h = model, ctypes.c_void_p()
        err = _lib.Error()
        check(lib().vlp_prompts_load(ctypes.byref(self._h), model._handle(), encode(path), ctypes.byref(err)), err)
        model._prompts.add(self)

    def _handle(self):
        if not self._h:
            raise VlpArgumentError("the prompts were closed (or their model was)")
        return self._h

    @property
    @_locked
    def description(self) -> str:
        buf = ctypes.create_string_buffer(512)
        return lib().vlp_prompts_describe(self._handle(), buf, len(buf)).decode()

    @property
    @_locked
    def classes(self) -> list[str]:
        h = self._handle()
        return [lib().vlp_prompts_class_name(h, c).decode("utf-8", "replace")
                for c in range(lib().vlp_prompts_class_count(h))]

    @_locked
    def set_classes(self, classes: Sequence[str]) -> None:
        """classify into other classes (a shared context takes any names; a
        class-specific one or a probe only its own, in any order)"""
        arr, keep = strings(list(classes))
        err = _lib.Error()
        check(lib().vlp_prompts_set_classes(self._handle(), arr, len(keep), ctypes.byref(err)), err)

    @_locked
    def classify(self, images: ImageLike | Sequence[ImageLike]) -> np.ndarray:
        """probabilities (n, len(classes)) float64: the softmax of the learnt classifier's logits"""
        m, h = self.model, self._handle()
        images = [images] if isinstance(images, (str, bytes, os.PathLike)) or _is_pil(images) else list(images)
        E, C = m.embed_dim, lib().vlp_prompts_class_count(h)
        out = np.empty((len(images), C), np.float32)
        err = _lib.Error()
        for i0 in range(0, len(images), m.batch):  # a batch a call: Ctrl-C between them
            px = np.stack([m.preprocess(x) for x in images[i0:i0 + m.batch]])
            feat = np.empty((len(px), E), np.float32)
            check(lib().vlp_prompts_encode_images(h, _as_float(px), len(px), _as_float(feat), ctypes.byref(err)), err)
            check(lib().vlp_prompts_scores(h, _as_float(feat), len(px), _as_float(out[i0:]), ctypes.byref(err)), err)
        z = out.astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    @_locked
    def close(self) -> None:
        if getattr(self, "_h", None):
            if getattr(self.model, "_h", None):  # its model freed first (a collected cycle): freeing would touch it
                lib().vlp_prompts_free(self._h)
            self._h = None


def _eval_dict(r) -> dict:
    """vlp_eval_result as a dict, with the tasks that ran"""
    out = {"images": r.images, "undecodable": r.undecodable, "skipped_rows": r.skipped_rows}
    if r.undecodable:
        out["first_undecodable"] = r.first_undecodable.decode("utf-8", "replace")
    if r.skipped_rows:
        out["first_skipped"] = r.first_skipped.decode("utf-8", "replace")
    if r.has_caption:
        out["caption"] = {"perplexity": float(np.exp(r.caption_nll / r.caption_tokens)),
                          "nll": r.caption_nll / r.caption_tokens, "tokens": r.caption_tokens,
                          "given_image": bool(r.caption_image)}
    if r.has_zeroshot:
        per = {}
        for c in range(r.classes):  # a class given twice: its first (the one its images count under)
            per.setdefault(r.class_names[c].decode("utf-8", "replace"),
                           {"images": r.class_images[c], "correct": r.class_correct[c]})
        out["zeroshot"] = {"images": r.zs_images, "classes": r.classes, "top1": r.top1, "top5": r.top5,
                           "balanced": r.balanced, "majority": r.majority, "per_class": per}
    if r.has_retrieval:
        out["retrieval"] = {"texts": r.texts, **{k: getattr(r, k) for k in (
            "i2t_r1", "i2t_r5", "i2t_r10", "i2t_mean_rank", "i2t_median_rank",
            "t2i_r1", "t2i_r5", "t2i_r10", "t2i_mean_rank", "t2i_median_rank")}}
    if r.rerank:
        out["retrieval_rerank"] = {"k": r.rerank, **{k: getattr(r, "rr_" + k) for k in (
            "i2t_r1", "i2t_r5", "i2t_r10", "i2t_mean_rank", "i2t_median_rank",
            "t2i_r1", "t2i_r5", "t2i_r10", "t2i_mean_rank", "t2i_median_rank")}}
    if r.has_probe:
        out["linear_probe"] = {"classes": r.probe_classes, "test_acc": r.probe_test_acc,
                               "train_acc": r.probe_train_acc, "loss": r.probe_loss,
                               "iterations": r.probe_iterations}
    return out


def _is_pil(x):
    return hasattr(x, "mode") and hasattr(x, "getpalette") and hasattr(x, "size")


def _pixels(image):
    """(pixels array (H, W[, C]) C-contiguous, mode, palette (256, 4) uint8 or None)"""
    if _is_pil(image):
        im, palette = image, None
        if im.mode.startswith("I;16"):
            im = im.convert("I")
        if im.mode not in _MODES:  # F, YCbCr, RGBX, PA, ...: Pillow's own conversion first
            im = im.convert("RGB")
        a = np.asarray(im)
        if im.mode == "1":
            a = a.astype(np.uint8) * 255
        elif im.mode == "I":
            a = a.astype(np.int32)
        elif im.mode == "P":
            pal = np.array(im.getpalette() or [], np.uint8).reshape(-1, 3)[:256]
            palette = np.zeros((256, 4), np.uint8)
            palette[:, :3] = np.arange(256, dtype=np.uint8)[:, None]  # past the palette: grey i, as Pillow 9.4
            palette[:len(pal), :3], palette[:, 3] = pal, 255
            t = im.info.get("transparency")
            if isinstance(t, int) and 0 <= t < 256:
                palette[t, 3] = 0
        return np.ascontiguousarray(a), _MODES[im.mode], palette
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise VlpArgumentError(f"an image array of {a.dtype}; give uint8 pixels (H, W[, 3 or 4]), "
                               "or float32 pixels (n, 3, S, S) already preprocessed")
    if a.ndim == 2:
        return np.ascontiguousarray(a), _MODES["L"], None
    if a.ndim == 3 and a.shape[2] in (3, 4):
        return np.ascontiguousarray(a), _MODES["RGB" if a.shape[2] == 3 else "RGBA"], None
    raise VlpArgumentError(f"an image array of shape {a.shape}; give (H, W), (H, W, 3) or (H, W, 4)")


def load_templates(name_or_file: PathLike) -> list[str]:
    """zero-shot templates: a set vlp ships by name, or a file, a template a line"""
    out, n, err = ctypes.POINTER(ctypes.c_char_p)(), ctypes.c_int(0), _lib.Error()
    check(lib().vlp_templates_load(encode(name_or_file), ctypes.byref(out), ctypes.byref(n), ctypes.byref(err)), err)
    try:
        return [out[i].decode("utf-8", "replace") for i in range(n.value)]
    finally:
        lib().vlp_templates_free(out, n.value)


def system_info() -> str:
    """the library's system line: version, threads, instruction-set level, BLAS"""
    s = _lib.SysInfo()
    lib().vlp_sysinfo_get(ctypes.byref(s))
    buf = ctypes.create_string_buffer(512)
    return lib().vlp_sysinfo_format(ctypes.byref(s), buf, len(buf)).decode()


def load(path: PathLike, config: str | None = None, precision: str = "fp32", **kw: Any) -> Model:
    """vlp.load(path, config=None, precision="fp32"|"bf16"|"int8", ...) → Model
    (see Model for the other options)"""
    return Model(path, config=config, precision=precision, **kw)
