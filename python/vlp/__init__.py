"""vlp from Python: CLIP-family models run and trained by vlp's C library
(libvlp.so), numpy arrays in and out, no PyTorch.

    import vlp
    m = vlp.load("model.safetensors")              # or config="ViT-B-16", precision="bf16"
    m.embed_texts(["a cat", "a dog"])              # (2, embed_dim) float32
    m.embed_images(["cat.jpg", "dog.png"])         # paths, PIL images or uint8 arrays
    m.classify("cat.jpg", ["cat", "dog"])          # zero-shot probabilities
    ix = vlp.Index(m.embed_images(paths), keys=paths)
    scores, rows = ix.search(m.embed_texts(["a red car"]), k=5)
    vlp.train(train_data="pairs.tsv", out="run", steps=100)

Errors raise vlp.VlpError (and its kinds: VlpArgumentError, VlpIOError,
VlpFormatError, ...) carrying the library's message. docs/python.md has the tour.
"""
from ._lib import lib as _lib_loaded
from ._lib import (VlpArgumentError, VlpError, VlpFormatError, VlpIOError, VlpMemoryError, VlpNumericError,
                   VlpUnsupportedError)
from .index import Index
from .model import Model, Prompts, load, load_templates, system_info
from .train import Trainer, train

__version__ = _lib_loaded().vlp_version().decode()  # the library's: import fails here when it is not found
__all__ = ["load", "Model", "Prompts", "Index", "Trainer", "train", "load_templates", "system_info", "VlpError",
           "VlpArgumentError", "VlpIOError", "VlpFormatError", "VlpUnsupportedError", "VlpNumericError",
           "VlpMemoryError"]
