"""How a cache entry's arrays are laid out on disk: lossless, and about half the size of ``np.savez``.

An entry is an ``.npz`` (a zip of ``.npy`` members, readable by ``np.load``) deflated at level 1.
Each float array is stored as its byte planes ``(itemsize, n)`` (byte ``j`` of every value
together, as HDF5's shuffle filter does) and its dtype and shape are recorded in the ``layout``
member: the sign/exponent bytes of activations repeat, so the planes deflate far better than
the interleaved values. Other arrays (row indices, names, scalars) are stored as they are.

Why not float16: the Betti scores threshold the taps (a raw η, or a quantile of each tap's own
values) and rounding to 11 mantissa bits ties values at the threshold (a tap with no value equal
to η = 0.5 gets 6), and ties take the slow path of :mod:`zoorank.topology.fast`. On
``tf_efficientnet_lite0`` + digits float16 moved ``betti_decay_norm`` by 16 % and ``betti_auc``
by 4 % at 64 px, and made ``betti_decay`` 36× slower at its native 224 px (772 s against 21 s
per model; θ moved by 0.08 %). Byte planes keep every bit, so every score reads exactly what the
forward pass produced.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from typing import IO, Any

import numpy as np

LAYOUT = "layout"  # member holding {"format": N, "planes": {name: {"dtype", "shape"}}}
COMPRESS_LEVEL = 1  # deflate's fastest: an entry is written once per forward pass, on the job's time


def _planes(array: np.ndarray) -> np.ndarray:
    """``(itemsize, n)`` uint8: byte ``j`` of every value in row ``j`` (C order of ``array``)."""
    flat = np.ascontiguousarray(array).reshape(-1)
    return np.ascontiguousarray(flat.view(np.uint8).reshape(flat.size, flat.dtype.itemsize).T)


def _from_planes(planes: np.ndarray, dtype: np.dtype[Any], shape: tuple[int, ...]) -> np.ndarray:
    values = np.ascontiguousarray(planes.T).view(dtype)
    return values.reshape(shape)


def write_entry(handle: IO[bytes], arrays: Mapping[str, np.ndarray], *, version: int) -> None:
    """Write ``arrays`` (member name -> array) to ``handle`` as an ``.npz``; float arrays as
    deflated byte planes. ``version`` is stored so that a reader can refuse another layout."""
    planes: dict[str, dict[str, Any]] = {}
    with zipfile.ZipFile(
        handle, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL, allowZip64=True
    ) as archive:
        for name, value in arrays.items():
            array = np.asarray(value)
            if np.issubdtype(array.dtype, np.floating) and array.ndim:
                planes[name] = {"dtype": array.dtype.str, "shape": list(array.shape)}
                array = _planes(array)
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
        layout = json.dumps({"format": version, "planes": planes})
        with archive.open(f"{LAYOUT}.npy", "w") as member:
            np.lib.format.write_array(member, np.asarray(layout), allow_pickle=False)


class EntryReader:
    """Reads the arrays of an entry opened with ``np.load`` (``NpzFile``) written by
    :func:`write_entry`.

    Raises:
        KeyError: no layout, or a layout of another ``version`` (written by another zoorank).
    """

    def __init__(self, archive: Any, *, version: int) -> None:
        layout = json.loads(str(archive[LAYOUT]))
        if layout.get("format") != version:
            raise KeyError(f"cache entry layout {layout.get('format')}, this zoorank reads {version}")
        self.archive = archive
        self.planes: dict[str, dict[str, Any]] = layout["planes"]

    def __getitem__(self, name: str) -> np.ndarray:
        stored = self.archive[name]
        if name not in self.planes:
            return np.asarray(stored)
        info = self.planes[name]
        return _from_planes(stored, np.dtype(info["dtype"]), tuple(info["shape"]))
