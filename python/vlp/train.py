"""Training through the library (include/vlp.h's vlp_train_*): the run `vlp
train` makes, with its options, defaults, checks, run directory and metrics.
The options are the command's, from its one table, by key (train_data=...,
lr=...) or by flag; `vlp train --help` lists them with their defaults."""
from __future__ import annotations

import ctypes
from typing import Any, Callable

from . import _lib
from ._lib import check, encode, lib


def _text(v):
    """an option's value as the command line gives it"""
    if v is True:
        return "on"
    if v is False:
        return "off"
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    return str(v)


class Trainer(_lib.Closable):
    """A training run: Trainer(train_data="pairs.tsv", out="run", steps=100, ...);
    an option given as None keeps the command's default.

    step() → the step's progress (dict); done; save() → the checkpoint's
    path; evaluate() → validation and zero-shot results (dict). resume=True
    with out= continues the run there. on_message(line) receives the lines
    `vlp train` would print (a warning about a skipped sample may come from
    a loader thread). Closed by close() or a `with` block; close() does not
    save."""

    def __init__(self, on_message: Callable[[str], None] | None = None, **options: Any) -> None:
        L, err = lib(), _lib.Error()
        o = ctypes.c_void_p()
        check(L.vlp_train_opts_new(ctypes.byref(o), ctypes.byref(err)), err)
        self._h = ctypes.c_void_p()
        try:
            for key, value in options.items():
                if value is None:  # left at the command's default
                    continue
                check(L.vlp_train_opts_set(o, encode(key), encode(_text(value)), ctypes.byref(err)), err)
            # the callback is kept as long as the run: the library calls it from its threads
            self._on_message = _lib.MESSAGE_FN(lambda user, line: on_message(line.decode("utf-8", "replace"))) \
                if on_message else None
            if self._on_message:
                L.vlp_train_opts_set_messages(o, self._on_message, None)
            check(L.vlp_train_open(ctypes.byref(self._h), o, ctypes.byref(err)), err)
        finally:
            L.vlp_train_opts_free(o)

    def step(self) -> dict:
        """one optimizer step (and the checkpoint or evaluation its schedule
        puts after it) → dict: step, steps, loss, lr, logit_scale, grad_norm,
        seconds, data_seconds, epoch, skipped"""
        p, err = _lib.TrainProgress(), _lib.Error()
        check(lib().vlp_train_step(self._handle(), ctypes.byref(p), ctypes.byref(err)), err)
        return {name: getattr(p, name) for name, _ in p._fields_}

    @property
    def done(self) -> bool:
        return bool(lib().vlp_train_done(self._handle()))

    @property
    def steps_done(self) -> int:
        return lib().vlp_train_step_count(self._handle())

    def save(self) -> str:
        """a checkpoint and the training state now → the checkpoint's path"""
        buf, err = ctypes.create_string_buffer(4096), _lib.Error()
        check(lib().vlp_train_save(self._handle(), buf, len(buf), ctypes.byref(err)), err)
        return buf.value.decode("utf-8", "surrogateescape")

    def evaluate(self) -> dict:
        """validation (retrieval, loss) and zero-shot on the run's val_data and
        zeroshot_data now → dict with the sets that were given ({} for none)"""
        e, err = _lib.TrainEval(), _lib.Error()
        check(lib().vlp_train_evaluate(self._handle(), ctypes.byref(e), ctypes.byref(err)), err)
        out = {"step": e.step}
        if e.has_val:
            out["val"] = {k: getattr(e, k) for k in ("images", "texts", "loss", "i2t_r1", "i2t_r5", "i2t_r10",
                                                     "t2i_r1", "t2i_r5", "t2i_r10")}
        if e.has_zeroshot:
            out["zeroshot"] = {"images": e.zs_images, "classes": e.classes, "top1": e.top1,
                               "balanced": e.balanced, "majority": e.majority}
        return out

    def run(self, progress: Callable[[dict], None] | None = None) -> dict:
        """steps to the run's end (progress(dict) after each), a checkpoint,
        then evaluate() → its dict"""
        while not self.done:
            p = self.step()
            if progress:
                progress(p)
        self.save()
        return self.evaluate()

    def _handle(self):
        if not self._h:
            raise _lib.VlpArgumentError("the run was closed")
        return self._h

    def close(self) -> None:
        if getattr(self, "_h", None):
            lib().vlp_train_close(self._h)
            self._h = None


def train(progress: Callable[[dict], None] | None = None, on_message: Callable[[str], None] | None = None,
          **options: Any) -> dict:
    """a whole run, as `vlp train`: vlp.train(train_data=..., out=..., steps=...)
    → the final evaluation (dict); progress(dict) after each step"""
    with Trainer(on_message=on_message, **options) as t:
        return t.run(progress)
