"""Exact search over embeddings: cosine top-k through the library's GEMM
(vlp_search, the rule of `vlp search`)."""
from __future__ import annotations

import ctypes
import os
from typing import Sequence

import numpy as np

from . import _lib
from ._lib import VlpArgumentError, check, lib


class Index:
    """Embeddings (n, d) with a key for each row (a path, an id, as a str;
    default the row number as text). search() gives each query's k most
    similar rows (cosine).
    Saved as vlp embed writes its output: NAME.npy and NAME.paths.txt."""

    def __init__(self, embeddings: np.ndarray | None = None, keys: Sequence | None = None,
                 dim: int | None = None) -> None:
        self._rows = []
        self.keys = []
        self.dim = dim
        self._x = None
        if embeddings is not None:
            self.add(embeddings, keys)

    def add(self, embeddings: np.ndarray, keys: Sequence | None = None) -> None:
        """append rows (n, d) and their keys (n of them; default row numbers)"""
        x = np.ascontiguousarray(embeddings, np.float32)
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2 or (self.dim is not None and x.shape[1] != self.dim):
            raise VlpArgumentError(f"embeddings of shape {x.shape}; the index holds rows of {self.dim}")
        keys = [str(i) for i in range(len(self), len(self) + len(x))] if keys is None else [str(k) for k in keys]
        if len(keys) != len(x):
            raise VlpArgumentError(f"{len(keys)} keys for {len(x)} rows")
        self.dim = x.shape[1]
        self._rows.append(x)
        self.keys.extend(keys)
        self._x = None

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def embeddings(self) -> np.ndarray:
        """all rows (n, d) float32"""
        if self._x is None:
            self._x = np.concatenate(self._rows) if self._rows else np.zeros((0, self.dim or 0), np.float32)
            self._rows = [self._x]
        return self._x

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """(scores (nq, k) float32, rows (nq, k) int64) for queries (nq, d) or (d,):
        best first, ties by lower row; past the index's rows, score -inf and row -1"""
        q = np.ascontiguousarray(queries, np.float32)
        single = q.ndim == 1
        q = q[None] if single else q
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise VlpArgumentError(f"queries of shape {np.shape(queries)}; the index holds rows of {self.dim}")
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise VlpArgumentError(f"k is {k!r}; it takes a whole number >= 1")
        x = self.embeddings
        ids = np.empty((len(q), k), np.int64)
        scores = np.empty((len(q), k), np.float32)
        err = _lib.Error()
        f32 = _lib.c_float_p
        check(lib().vlp_search(ctypes.cast(x.ctypes.data, f32), len(x), self.dim, ctypes.cast(q.ctypes.data, f32),
                               len(q), int(k), ctypes.cast(ids.ctypes.data, _lib.c_long_p),
                               ctypes.cast(scores.ctypes.data, f32), ctypes.byref(err)), err)
        return (scores[0], ids[0]) if single else (scores, ids)

    def keys_of(self, rows) -> list:
        """the keys of row numbers (an array from search; -1 gives None)"""
        return [self.keys[int(r)] if r >= 0 else None for r in np.ravel(rows)]

    def save(self, path) -> None:
        """NAME.npy and NAME.paths.txt (path may end in .npy); written whole or not at all"""
        base = os.fspath(path)
        base = base[:-4] if base.endswith(".npy") else base
        if any("\n" in str(k) for k in self.keys):
            raise VlpArgumentError("a key holds a line break; NAME.paths.txt has a key a line")
        keys = "".join(f"{k}\n" for k in self.keys).encode("utf-8", "surrogateescape")  # what load read, back
        for name, write in ((base + ".npy", lambda f: np.save(f, self.embeddings)),
                            (base + ".paths.txt", lambda f: f.write(keys))):
            tmp = f"{name}.tmp{os.getpid()}"
            try:
                with open(tmp, "wb") as f:
                    write(f)
                os.replace(tmp, name)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)

    @classmethod
    def load(cls, path, keys: Sequence | None = None) -> "Index":
        """an index from NAME.npy (what vlp embed -o writes), its keys from
        NAME.paths.txt beside it when there (else `keys`, else row numbers)"""
        p = os.fspath(path)
        x = np.load(p if p.endswith(".npy") else p + ".npy")
        base = p[:-4] if p.endswith(".npy") else p
        if keys is None and os.path.exists(base + ".paths.txt"):
            with open(base + ".paths.txt", encoding="utf-8", errors="surrogateescape", newline="") as f:
                keys = f.read().split("\n")  # a key a line: only \n ends one (a path may hold \r)
            if keys and keys[-1] == "":
                keys.pop()
        if keys is not None and len(keys) != len(x):
            raise VlpArgumentError(f"{base}.npy has {len(x)} rows and {len(keys)} keys")
        return cls(x, keys)
