"""The C library, libvlp.so, through ctypes: where it is found, the
signatures of the calls the package makes, and vlp's errors as Python
exceptions. ctypes releases the GIL around every call into the library, so
other Python threads run while it works."""
import ctypes
import ctypes.util
import os

# ---- errors ---------------------------------------------------------------

VLP_OK, NOMEM, SHAPE, ARG, IO, FORMAT, NUMERIC, UNSUPPORTED = range(8)


class VlpError(Exception):
    """A failure the library reported: .code (vlp_err), .where ("file.c:123"
    of the check that failed) and .message (names the file, line, field or
    tensor at fault)."""

    def __init__(self, message, code=ARG, where=""):
        super().__init__(message)
        self.message, self.code, self.where = message, code, where


class VlpArgumentError(VlpError, ValueError):
    """A bad argument, option or value (VLP_ERR_ARG, VLP_ERR_SHAPE)."""


class VlpIOError(VlpError, OSError):
    """A file that cannot be opened, read or written (VLP_ERR_IO)."""

    def __init__(self, message, code=IO, where=""):
        VlpError.__init__(self, message, code, where)


class VlpFormatError(VlpError, ValueError):
    """A file that is corrupt, cut short or of another kind (VLP_ERR_FORMAT)."""


class VlpUnsupportedError(VlpError):
    """A valid request this build or CPU cannot serve (VLP_ERR_UNSUPPORTED)."""


class VlpNumericError(VlpError, ArithmeticError):
    """NaN or infinity where a finite value is required (VLP_ERR_NUMERIC)."""


class VlpMemoryError(VlpError, MemoryError):
    """An allocation failed (VLP_ERR_NOMEM)."""


_BY_CODE = {NOMEM: VlpMemoryError, SHAPE: VlpArgumentError, ARG: VlpArgumentError, IO: VlpIOError,
            FORMAT: VlpFormatError, NUMERIC: VlpNumericError, UNSUPPORTED: VlpUnsupportedError}


class Closable:
    """A handle freed by close(), at a `with` block's end, or when collected
    (Model, Prompts, Trainer: each defines close())"""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


class Error(ctypes.Structure):
    """include/vlp_error.h's vlp_error"""
    _fields_ = [("code", ctypes.c_int), ("where", ctypes.c_char * 64), ("message", ctypes.c_char * 448)]

    def exception(self):
        msg = self.message.decode("utf-8", "replace")
        if self.code == NOMEM:  # the library's line for the user adds its hint
            buf = ctypes.create_string_buffer(1024)
            lib().vlp_error_format(ctypes.byref(self), buf, len(buf))
            msg = buf.value.decode("utf-8", "replace")
        return _BY_CODE.get(self.code, VlpError)(msg, self.code, self.where.decode("utf-8", "replace"))


def check(rc, err):
    """raise the exception of a failed call"""
    if rc != VLP_OK:
        raise err.exception()


# ---- finding the library ----------------------------------------------------

_HERE = os.path.dirname(os.path.abspath(__file__))


def _candidates():
    """where libvlp.so is looked for, in order: $VLP_LIBRARY; beside the
    package as `make install` lays it out (PREFIX/lib/pythonX.Y/dist-packages/vlp
    -> PREFIX/lib); the source tree's build (python/vlp -> build/release);
    then the system's loader path"""
    env = os.environ.get("VLP_LIBRARY")
    if env:
        yield env
        return
    yield os.path.normpath(os.path.join(_HERE, "../../../libvlp.so.0"))
    yield os.path.normpath(os.path.join(_HERE, "../../build/release/libvlp.so.0"))
    found = ctypes.util.find_library("vlp")
    if found:
        yield found


_LIB = None


def lib():
    """the loaded library, its signatures declared (loaded once)"""
    global _LIB
    if _LIB is None:
        tried = []
        for path in _candidates():
            if os.sep in path and not os.path.exists(path):
                tried.append(path)
                continue
            try:
                _LIB = _declare(ctypes.CDLL(path))
                break
            except OSError as e:
                tried.append(f"{path} ({e})")
        if _LIB is None:
            raise ImportError("vlp: libvlp.so not found; tried " + ", ".join(tried) +
                              ". Install vlp (make install), or set VLP_LIBRARY to the library's path")
    return _LIB


P = ctypes.POINTER
c_float_p, c_int_p, c_long_p, c_bool_p = P(ctypes.c_float), P(ctypes.c_int), P(ctypes.c_long), P(ctypes.c_bool)
c_char_pp = P(ctypes.c_char_p)
MESSAGE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p)


class ModelOpts(ctypes.Structure):
    """include/vlp.h's vlp_model_opts"""
    _fields_ = [("vocab", ctypes.c_char_p), ("quick_gelu", ctypes.c_int), ("batch", ctypes.c_int),
                ("normalize", ctypes.c_bool), ("bf16", ctypes.c_bool), ("model_config", ctypes.c_char_p),
                ("trainable", ctypes.c_bool), ("alpha", ctypes.c_int)]


class Image(ctypes.Structure):
    """include/vlp.h's vlp_image"""
    _fields_ = [("width", ctypes.c_int), ("height", ctypes.c_int), ("mode", ctypes.c_int),
                ("pixels", ctypes.c_void_p), ("palette", ctypes.c_void_p)]


class SysInfo(ctypes.Structure):
    """include/vlp.h's vlp_sysinfo"""
    _fields_ = [("threads", ctypes.c_int), ("avx2", ctypes.c_bool), ("fma", ctypes.c_bool),
                ("avx512f", ctypes.c_bool), ("avx512bf16", ctypes.c_bool), ("isa", ctypes.c_char * 24),
                ("cpu_isa", ctypes.c_char * 24), ("kernels", ctypes.c_char * 192), ("blas_name", ctypes.c_char * 32),
                ("blas_kernel", ctypes.c_char * 32), ("blas_threading", ctypes.c_char * 16),
                ("blas_threads", ctypes.c_int), ("blas_kernel_forced_weaker", ctypes.c_bool),
                ("forced_coretype", ctypes.c_char * 32)]


PROGRESS_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_longlong)
PAIRS_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_longlong, ctypes.c_longlong)


class EvalOpts(ctypes.Structure):
    """include/vlp.h's vlp_eval_opts"""
    _fields_ = [("data", ctypes.c_char_p), ("image_key", ctypes.c_char_p), ("caption_key", ctypes.c_char_p),
                ("label_key", ctypes.c_char_p), ("zeroshot", ctypes.c_bool), ("retrieval", ctypes.c_bool),
                ("linear_probe", ctypes.c_bool), ("templates", c_char_pp), ("n_templates", ctypes.c_int),
                ("classes", c_char_pp), ("n_classes", ctypes.c_int), ("prompts", ctypes.c_void_p),
                ("text_only", ctypes.c_bool), ("probe_test_fraction", ctypes.c_double),
                ("probe_l2", ctypes.c_double), ("seed", ctypes.c_ulonglong), ("stop_on_bad", ctypes.c_bool),
                ("warn", MESSAGE_FN), ("progress", PROGRESS_FN), ("user", ctypes.c_void_p),
                ("rerank", ctypes.c_int), ("rerank_progress", PAIRS_FN)]


class EvalResult(ctypes.Structure):
    """include/vlp.h's vlp_eval_result"""
    _fields_ = [("images", ctypes.c_int), ("undecodable", ctypes.c_longlong),
                ("first_undecodable", ctypes.c_char * 512), ("skipped_rows", ctypes.c_longlong),
                ("first_skipped", ctypes.c_char * 512), ("has_caption", ctypes.c_bool),
                ("caption_image", ctypes.c_bool), ("caption_nll", ctypes.c_double), ("caption_tokens", ctypes.c_long),
                ("has_zeroshot", ctypes.c_bool), ("zs_images", ctypes.c_int), ("classes", ctypes.c_int),
                ("top1", ctypes.c_double), ("top5", ctypes.c_double), ("balanced", ctypes.c_double),
                ("majority", ctypes.c_double), ("class_names", c_char_pp), ("class_images", c_int_p),
                ("class_correct", c_int_p), ("has_retrieval", ctypes.c_bool), ("texts", ctypes.c_int),
                ("i2t_r1", ctypes.c_double), ("i2t_r5", ctypes.c_double), ("i2t_r10", ctypes.c_double),
                ("i2t_mean_rank", ctypes.c_double), ("i2t_median_rank", ctypes.c_double),
                ("t2i_r1", ctypes.c_double), ("t2i_r5", ctypes.c_double), ("t2i_r10", ctypes.c_double),
                ("t2i_mean_rank", ctypes.c_double), ("t2i_median_rank", ctypes.c_double),
                ("has_probe", ctypes.c_bool), ("probe_classes", ctypes.c_int), ("probe_iterations", ctypes.c_int),
                ("probe_test_acc", ctypes.c_double), ("probe_train_acc", ctypes.c_double),
                ("probe_loss", ctypes.c_double), ("rerank", ctypes.c_int),
                ("rr_i2t_r1", ctypes.c_double), ("rr_i2t_r5", ctypes.c_double), ("rr_i2t_r10", ctypes.c_double),
                ("rr_i2t_mean_rank", ctypes.c_double), ("rr_i2t_median_rank", ctypes.c_double),
                ("rr_t2i_r1", ctypes.c_double), ("rr_t2i_r5", ctypes.c_double), ("rr_t2i_r10", ctypes.c_double),
                ("rr_t2i_mean_rank", ctypes.c_double), ("rr_t2i_median_rank", ctypes.c_double)]


class TrainProgress(ctypes.Structure):
    """include/vlp.h's vlp_train_progress"""
    _fields_ = [("step", ctypes.c_long), ("steps", ctypes.c_long), ("loss", ctypes.c_float), ("lr", ctypes.c_float),
                ("logit_scale", ctypes.c_float), ("grad_norm", ctypes.c_double), ("seconds", ctypes.c_double),
                ("data_seconds", ctypes.c_double), ("epoch", ctypes.c_longlong), ("skipped", ctypes.c_int)]


class TrainEval(ctypes.Structure):
    """include/vlp.h's vlp_train_eval"""
    _fields_ = [("step", ctypes.c_long), ("has_val", ctypes.c_int), ("has_zeroshot", ctypes.c_int),
                ("images", ctypes.c_int), ("texts", ctypes.c_int), ("loss", ctypes.c_double),
                ("i2t_r1", ctypes.c_double), ("i2t_r5", ctypes.c_double), ("i2t_r10", ctypes.c_double),
                ("t2i_r1", ctypes.c_double), ("t2i_r5", ctypes.c_double), ("t2i_r10", ctypes.c_double),
                ("zs_images", ctypes.c_int), ("classes", ctypes.c_int), ("top1", ctypes.c_double),
                ("balanced", ctypes.c_double), ("majority", ctypes.c_double)]


def _declare(L):
    E = P(Error)
    h = ctypes.c_void_p
    sig = {
        "vlp_version": (ctypes.c_char_p, []),
        "vlp_error_format": (ctypes.c_char_p, [E, ctypes.c_char_p, ctypes.c_size_t]),
        "vlp_sysinfo_get": (None, [P(SysInfo)]),
        "vlp_sysinfo_format": (ctypes.c_char_p, [P(SysInfo), ctypes.c_char_p, ctypes.c_size_t]),
        "vlp_set_threads": (None, [ctypes.c_int]),
        "vlp_data_file": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t, E]),
        "vlp_model_opts_default": (ModelOpts, []),
        "vlp_model_load": (ctypes.c_int, [P(h), ctypes.c_char_p, P(ModelOpts), E]),
        "vlp_model_free": (None, [h]),
        "vlp_model_embed_dim": (ctypes.c_int, [h]),
        "vlp_model_image_size": (ctypes.c_int, [h]),
        "vlp_model_context_length": (ctypes.c_int, [h]),
        "vlp_model_parameter_count": (ctypes.c_size_t, [h]),
        "vlp_model_config_json": (ctypes.c_int, [h, ctypes.c_char_p, ctypes.c_size_t, E]),
        "vlp_model_warning": (ctypes.c_char_p, [h]),
        "vlp_model_describe": (ctypes.c_char_p, [h, ctypes.c_char_p, ctypes.c_size_t]),
        "vlp_model_quantize": (ctypes.c_int, [h, E]),
        "vlp_model_is_int8": (ctypes.c_bool, [h]),
        "vlp_model_has_decoder": (ctypes.c_bool, [h]),
        "vlp_model_has_fusion": (ctypes.c_bool, [h]),
        "vlp_itm_scores": (ctypes.c_int, [h, c_float_p, ctypes.c_int, c_char_pp, ctypes.c_int, c_int_p, ctypes.c_long,
                                          c_float_p, E]),
        "vlp_encode_images": (ctypes.c_int, [h, c_float_p, ctypes.c_int, c_float_p, E]),
        "vlp_encode_image_files_skipping": (ctypes.c_int, [h, c_char_pp, ctypes.c_int, c_float_p, c_bool_p,
                                                           c_int_p, E, E]),
        "vlp_preprocess_image": (ctypes.c_int, [h, P(Image), c_float_p, E]),
        "vlp_preprocess_image_file": (ctypes.c_int, [h, ctypes.c_char_p, c_float_p, E]),
        "vlp_encode_texts": (ctypes.c_int, [h, c_char_pp, ctypes.c_int, c_float_p, E]),
        "vlp_encode_classes": (ctypes.c_int, [h, c_char_pp, ctypes.c_int, c_char_pp, ctypes.c_int, c_float_p, E]),
        "vlp_templates_load": (ctypes.c_int, [ctypes.c_char_p, P(c_char_pp), c_int_p, E]),
        "vlp_templates_free": (None, [c_char_pp, ctypes.c_int]),
        "vlp_caption_images": (ctypes.c_int, [h, c_float_p, ctypes.c_int, ctypes.c_int, P(ctypes.c_void_p),
                                              c_float_p, E]),
        "vlp_tokenize": (None, [h, ctypes.c_char_p, c_int_p, ctypes.c_int]),
        "vlp_search": (ctypes.c_int, [c_float_p, ctypes.c_long, ctypes.c_int, c_float_p, ctypes.c_int, ctypes.c_int,
                                      c_long_p, c_float_p, E]),
        "vlp_prompts_load": (ctypes.c_int, [P(h), h, ctypes.c_char_p, E]),
        "vlp_prompts_free": (None, [h]),
        "vlp_prompts_describe": (ctypes.c_char_p, [h, ctypes.c_char_p, ctypes.c_size_t]),
        "vlp_prompts_class_count": (ctypes.c_int, [h]),
        "vlp_prompts_class_name": (ctypes.c_char_p, [h, ctypes.c_int]),
        "vlp_prompts_set_classes": (ctypes.c_int, [h, c_char_pp, ctypes.c_int, E]),
        "vlp_prompts_encode_images": (ctypes.c_int, [h, c_float_p, ctypes.c_int, c_float_p, E]),
        "vlp_prompts_scores": (ctypes.c_int, [h, c_float_p, ctypes.c_int, c_float_p, E]),
        "vlp_eval_opts_default": (EvalOpts, []),
        "vlp_eval": (ctypes.c_int, [h, P(EvalOpts), P(EvalResult), E]),
        "vlp_eval_result_free": (None, [P(EvalResult)]),
        "vlp_train_opts_new": (ctypes.c_int, [P(h), E]),
        "vlp_train_opts_free": (None, [h]),
        "vlp_train_opts_set": (ctypes.c_int, [h, ctypes.c_char_p, ctypes.c_char_p, E]),
        "vlp_train_opts_get": (ctypes.c_int, [h, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t, E]),
        "vlp_train_opts_set_messages": (None, [h, MESSAGE_FN, ctypes.c_void_p]),
        "vlp_train_open": (ctypes.c_int, [P(h), h, E]),
        "vlp_train_step": (ctypes.c_int, [h, P(TrainProgress), E]),
        "vlp_train_done": (ctypes.c_bool, [h]),
        "vlp_train_step_count": (ctypes.c_long, [h]),
        "vlp_train_save": (ctypes.c_int, [h, ctypes.c_char_p, ctypes.c_size_t, E]),
        "vlp_train_evaluate": (ctypes.c_int, [h, P(TrainEval), E]),
        "vlp_train_close": (None, [h]),
    }
    for name, (res, args) in sig.items():
        f = getattr(L, name)
        f.restype, f.argtypes = res, args
    return L


# the C library's free(), for the strings vlp_caption_images returns
_libc = ctypes.CDLL(None)
c_free = _libc.free
c_free.argtypes, c_free.restype = [ctypes.c_void_p], None


def encode(s):
    """a str or path as the library's bytes (UTF-8; a path by the file system's encoding)"""
    if isinstance(s, bytes):
        return s
    if isinstance(s, os.PathLike):
        return os.fsencode(s)
    if not isinstance(s, str):
        raise VlpArgumentError(f"expected a str, got {type(s).__name__}")
    return s.encode("utf-8", "surrogateescape")


def strings(items):
    """a C array of char* for a list of str, kept alive with it"""
    enc = [encode(x) for x in items]
    arr = (ctypes.c_char_p * max(len(enc), 1))(*enc)
    return arr, enc
