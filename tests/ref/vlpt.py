"""Writer/reader of vlp's named-tensor files (src/io/tensorfile.h)."""
import struct

import numpy as np

MAGIC = b"VLPTNSR\0"
VERSION = 1
DTYPES = {np.dtype(np.float32): 0, np.dtype(np.int32): 1}


def write(path, tensors):
    """tensors: dict name -> numpy array (float32 or int32); order is kept."""
    with open(path, "wb") as f:
        f.write(MAGIC + struct.pack("<II", VERSION, len(tensors)))
        for name, arr in tensors.items():
            arr = np.require(arr, requirements="C")  # keeps 0-d arrays 0-d
            if arr.dtype not in DTYPES:
                raise TypeError(f"{name}: dtype {arr.dtype} is not float32/int32")
            raw = name.encode()
            f.write(struct.pack("<H", len(raw)) + raw)
            f.write(struct.pack("<BB", DTYPES[arr.dtype], arr.ndim))
            f.write(struct.pack(f"<{arr.ndim}Q", *arr.shape))
            data = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
            f.write(struct.pack("<Q", len(data)) + data)


def read(path):
    out = {}
    with open(path, "rb") as f:
        buf = f.read()
    assert buf[:8] == MAGIC, f"{path}: bad magic"
    version, count = struct.unpack_from("<II", buf, 8)
    assert version == VERSION
    pos = 16
    for _ in range(count):
        (n,) = struct.unpack_from("<H", buf, pos); pos += 2
        name = buf[pos:pos + n].decode(); pos += n
        dtype, ndim = struct.unpack_from("<BB", buf, pos); pos += 2
        shape = struct.unpack_from(f"<{ndim}Q", buf, pos); pos += 8 * ndim
        (nbytes,) = struct.unpack_from("<Q", buf, pos); pos += 8
        dt = np.float32 if dtype == 0 else np.int32
        out[name] = np.frombuffer(buf[pos:pos + nbytes], dtype=dt).reshape(shape); pos += nbytes
    assert pos == len(buf), f"{path}: trailing bytes"
    return out
