"""MATLAB v7.3 MAT-files (HDF5 with a 512-byte user block) written with h5py.

What MATLAB itself writes with ``save(file, '-v7.3', ...)`` and needs to ``load`` a file:

* an HDF5 file with a 512-byte user block whose first 128 bytes are the MAT-file header text
  ("MATLAB 7.3 MAT-file, ...", padded with spaces to 116 bytes, an 8-byte subsystem offset, version
  0x0200 and the endian indicator "IM");
* one dataset per variable with the string attribute ``MATLAB_class`` ("double", "single", "logical", ...;
  logicals also carry ``MATLAB_int_decode = 1``);
* column-major storage: a MATLAB array of size ``d1 x d2 x ... x dn`` is an HDF5 dataset of shape
  ``(dn, ..., d2, d1)``. h5py shows the reversed shape, so MATLAB's ``3x17x1xN`` reads as ``(N, 1, 17, 3)``.

GNU Octave (7.x) loads such files with ``load`` as well.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np

from ctxpose.utils.io import atomic_path

USERBLOCK_BYTES = 512
_CLASSES = {np.dtype(np.float64): "double", np.dtype(np.float32): "single", np.dtype(np.bool_): "logical",
            np.dtype(np.uint8): "uint8", np.dtype(np.int32): "int32", np.dtype(np.int64): "int64"}


def matlab_v73_header() -> bytes:
    """The 128-byte MAT-file header MATLAB puts in the HDF5 user block of v7.3 files."""
    now = datetime.datetime(2010, 1, 1).strftime("%a %b %d %H:%M:%S %Y")
    text = f"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: {now} HDF5 schema 1.00 .".encode("ascii")
    return text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"


def write_mat_v73(path: str | Path, variables: dict[str, np.ndarray]) -> None:
    """Write numeric arrays as a MATLAB v7.3 MAT-file, atomically (temporary name, then rename).

    Args:
        path: destination ``.mat``.
        variables: name -> array in the shape MATLAB shall see (e.g. ``(3, 17, 1, N)``); stored reversed
            (h5py reads ``(N, 1, 17, 3)``). A 1-D array of length N is stored as MATLAB's ``1xN``.
            dtypes: float64, float32, bool, uint8, int32, int64.

    Raises:
        ValueError: an unsupported dtype or an invalid variable name.
        OSError: the file cannot be written (the destination is left untouched).
    """
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", userblock_size=USERBLOCK_BYTES) as f:
            for name, value in variables.items():
                if not name.isidentifier():
                    raise ValueError(f"{name!r} is not a valid MATLAB variable name")
                array = np.asarray(value)
                if array.dtype not in _CLASSES:
                    raise ValueError(f"variable {name}: dtype {array.dtype} has no MATLAB class here "
                                     f"(expected one of {sorted(str(d) for d in _CLASSES)})")
                if array.ndim == 1:
                    array = array[None]  # MATLAB has no 1-D arrays: a row vector 1xN
                stored = array.astype(np.uint8) if array.dtype == np.bool_ else array
                ds = f.create_dataset(name, data=np.ascontiguousarray(stored.transpose()))
                ds.attrs["MATLAB_class"] = np.bytes_(_CLASSES[array.dtype])
                if array.dtype == np.bool_:
                    ds.attrs["MATLAB_int_decode"] = np.int32(1)
        with open(tmp, "r+b") as f:
            f.write(matlab_v73_header())
