"""Load a dataset reference as labelled uint8 RGB images with a content fingerprint.

Images are ``(h, w, 3)`` uint8. Builtin sets are held in memory; folder, upload and npz sets
read their images only when asked (folders only the files asked for, after subsampling), each
folder image resized to a square canonical size so a batch stacks. The identity (fingerprint
and version) and the index (labels, class names) come from :mod:`zoorank.data.identity`,
computed once per process and checked against a job's stored identity.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import cast

import numpy as np
from PIL import Image

from zoorank.data.identity import (
    IMAGE_SUFFIXES,
    DatasetIdentity,
    DatasetIndex,
    FolderListing,
    array_fingerprint,
    cached_index,
    check_expected,
    file_version,
    folder_fingerprint,
    list_folder,
)
from zoorank.data.refs import DatasetRef, parse_dataset_ref, resolve_under_roots
from zoorank.errors import InvalidInputError, UnknownNameError

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageDataset",
    "class_sizes",
    "encode_png",
    "list_builtin_datasets",
    "load_dataset",
]
CANONICAL_SIZE = 224  # folder images are resized to this square on load
MAX_IMAGE_PIXELS = 50_000_000  # per image (width x height), the documented limit; checked in _load_image
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)

Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


@dataclass
class ImageDataset:
    """Labels and class names of a dataset, a content fingerprint and an image reader.

    ``read(rows) -> (m, h, w, 3) uint8`` returns the images of the given row indices.
    ``version`` changes when the content may have (see :mod:`zoorank.data.identity`).
    """

    ref: str
    labels: np.ndarray
    class_names: list[str]
    fingerprint: str
    read: Callable[[np.ndarray], np.ndarray]
    version: str = ""

    @property
    def identity(self) -> DatasetIdentity:
        """What a job stores to hand its workers (``load_dataset(..., expect=...)``)."""
        return DatasetIdentity(self.version or self.fingerprint, self.fingerprint)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _gray_to_rgb_uint8(images: np.ndarray, max_value: float) -> np.ndarray:
    scaled = np.clip(np.rint(images.astype(np.float64) * (255.0 / max_value)), 0, 255)
    return np.repeat(scaled.astype(np.uint8)[..., None], 3, axis=-1)


def _from_index(ref: str, index: DatasetIndex, read: Callable[[np.ndarray], np.ndarray]) -> ImageDataset:
    return ImageDataset(
        ref=ref,
        labels=index.labels,
        class_names=index.class_names,
        fingerprint=index.fingerprint,
        read=read,
        version=index.identity.version,
    )


@cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return _gray_to_rgb_uint8(bunch.images, 16.0), bunch.target


def _find_fashion_mnist() -> Path | None:
    for folder in FASHION_MNIST_DIRS:
        if (Path(folder) / "t10k-images-idx3-ubyte.gz").exists():
            return Path(folder)
    return None


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


@cache
def _fashion_mnist() -> tuple[np.ndarray, np.ndarray]:
    folder = _find_fashion_mnist()
    if folder is None:
        raise InvalidInputError(
            "builtin:fashion-mnist needs the Debian package dataset-fashion-mnist "
            "(apt-get install dataset-fashion-mnist)",
            field="dataset",
        )
    # The 10k test split: small enough to hold and subsample on a CPU.
    images = _read_idx(folder / "t10k-images-idx3-ubyte.gz")
    labels = _read_idx(folder / "t10k-labels-idx1-ubyte.gz")
    return _gray_to_rgb_uint8(images, 255.0), labels


FASHION_NAMES = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
]

_BUILTINS: dict[str, tuple[Callable[[], tuple[np.ndarray, np.ndarray]], list[str], str]] = {
    "digits": (
        _digits,
        [str(i) for i in range(10)],
        "scikit-learn 8x8 handwritten digits, 1797 images",
    ),
    "fashion-mnist": (
        _fashion_mnist,
        FASHION_NAMES,
        "Fashion-MNIST test split, 10000 28x28 images",
    ),
}


@cache
def _builtin_index(name: str) -> DatasetIndex:
    """Fingerprint and labels of a builtin set, once per process (its arrays never change)."""
    loader, names, _ = _BUILTINS[name]
    images, labels = loader()
    fingerprint = array_fingerprint(images, labels)
    return DatasetIndex(DatasetIdentity(fingerprint, fingerprint), labels.astype(np.int64), list(names))


def list_builtin_datasets() -> list[dict[str, object]]:
    """Catalogue of builtin datasets: whether each is installed here, its class names and, when
    installed, its images in all and per class."""
    rows: list[dict[str, object]] = []
    for name, (_, names, description) in _BUILTINS.items():
        available = name != "fashion-mnist" or _find_fashion_mnist() is not None
        row: dict[str, object] = {
            "ref": f"builtin:{name}",
            "description": description,
            "classes": len(names),
            "available": available,
            "class_names": list(names),
        }
        if available:
            sizes = class_sizes(_builtin_index(name).labels, len(names))
            row |= {"images": sum(sizes), "class_images": sizes}
        rows.append(row)
    return rows


def class_sizes(labels: np.ndarray, classes: int) -> list[int]:
    """Images per class, in label order (a class with none counts 0)."""
    return [int(n) for n in np.bincount(labels, minlength=classes)]


def _load_image(path: Path) -> np.ndarray:
    """One image of a folder or upload, as ``(CANONICAL_SIZE, CANONICAL_SIZE, 3)`` uint8: the one
    place images are opened, so the pixel limit holds for every dataset."""
    try:
        with Image.open(path) as image:  # reads the header only
            if image.width * image.height > MAX_IMAGE_PIXELS:  # PIL itself refuses only above 2x
                raise _too_large(path, f"{image.width}x{image.height}")
            image.draft("RGB", (CANONICAL_SIZE, CANONICAL_SIZE))
            rgb = _as_rgb(image, path).resize((CANONICAL_SIZE, CANONICAL_SIZE), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8)
    except InvalidInputError:
        raise
    except Image.DecompressionBombError:
        raise _too_large(path, f"more than {2 * MAX_IMAGE_PIXELS:,} pixels") from None
    except (OSError, ValueError, SyntaxError) as exc:
        # the reader's message names the file by its absolute path on this server: not shown
        reason = str(exc).replace(f"'{path}'", "").replace(str(path), "").strip()
        raise InvalidInputError(
            f"image {_shown(path)} is not a readable image ({reason or type(exc).__name__})", field="dataset"
        ) from None


def _as_rgb(image: Image.Image, path: Path) -> Image.Image:
    """8-bit RGB. Pillow's own conversion clips the high-bit-depth grey modes (a 16-bit PNG is
    ``I;16``: every value above 255 becomes white); those are scaled by their bit depth instead:
    16-bit integers by 1/257, floats in [0, 1] by 255. Values outside the mode's range are
    refused rather than guessed."""
    mode = image.mode
    if not (mode.startswith("I") or mode == "F"):
        return image.convert("RGB")
    values = np.asarray(image, dtype=np.float64)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if mode == "F" and low >= 0.0 and high <= 1.0:
        scaled = values * 255.0
    elif mode.startswith("I;16") or (mode == "I" and low >= 0.0 and high <= 65535.0):
        scaled = values / 257.0 if mode.startswith("I;16") or high > 255.0 else values
    elif mode == "F" and low >= 0.0 and high <= 255.0:
        scaled = values
    else:
        raise InvalidInputError(
            f"image {_shown(path)} is a {mode} image with values from {low:g} to {high:g}, outside 16-bit"
            " (or, for floats, [0, 1]); save it as an 8- or 16-bit image",
            field="dataset",
        )
    grey = Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")
    return grey.convert("RGB")


def _too_large(path: Path, size: str) -> InvalidInputError:
    return InvalidInputError(
        f"image {_shown(path)} is {size}, more than the limit of {MAX_IMAGE_PIXELS // 10**6} megapixels "
        f"({MAX_IMAGE_PIXELS:,} pixels); scale it down",
        field="dataset",
    )


def _shown(path: Path) -> str:
    """An image's name as users know it, relative to its dataset: ``CLASS/FILE``."""
    return f"{path.parent.name}/{path.name}"


def _folder(
    ref: str, root: Path, expect: DatasetIdentity | None, *, upload_id: str | None = None
) -> ImageDataset:
    """A ``ROOT/CLASS/IMAGE`` folder. Its version is its listing; an upload's is its id (the
    service wrote it once, named by the archive's hash), so a cached upload is not listed again."""
    listing = None if upload_id is not None else list_folder(root)

    def build(known: str | None) -> DatasetIndex:
        found = listing or list_folder(root)
        fingerprint = known or folder_fingerprint(found)
        identity = DatasetIdentity(upload_id or found.version, fingerprint)
        return DatasetIndex(identity, found.labels, found.class_names, found.files)

    version = upload_id if upload_id is not None else cast(FolderListing, listing).version
    index = cached_index(f"folder:{root}", version, build, expect)
    files = index.files
    return _from_index(
        ref, index, lambda rows: np.stack([_load_image(files[int(i)]) for i in np.asarray(rows)])
    )


def _npz_arrays(path: Path, *, labels_only: bool = False) -> tuple[np.ndarray | None, np.ndarray, list[str]]:
    """``(x, labels, class names)`` of an ``.npz``: x as (n, h, w, 3) uint8 (``None`` with
    ``labels_only``), labels as indices into the sorted distinct values of ``y``."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a single .npy array: no labels in it
            raise ValueError(f"it holds one {type(loaded).__name__}, not named arrays")
        with loaded as archive:
            y = archive["y"]
            x = None if labels_only else archive["x"]
    except (OSError, KeyError, ValueError) as exc:
        raise InvalidInputError(
            f"{path.name} must be an .npz with arrays 'x' (n,h,w[,c]) and 'y' (n,): {exc}",
            field="dataset",
        ) from None
    names, labels = np.unique(y, return_inverse=True)
    if x is None:
        return None, labels, [str(n) for n in names]
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or y.shape != (x.shape[0],):
        raise InvalidInputError(
            f"npz arrays must be x (n,h,w) or (n,h,w,1|3) and y (n,); got {x.shape} and {y.shape}",
            field="dataset",
        )
    if x.dtype != np.uint8:
        high = float(np.nanmax(x)) if x.size else 1.0
        if not np.isfinite(x).all():
            raise InvalidInputError("npz array x contains NaN or inf", field="dataset")
        x = np.clip(np.rint(x * (255.0 / (high if high > 1.0 else 1.0))), 0, 255).astype(np.uint8)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return x, labels, [str(n) for n in names]


def _npz(ref: str, path: Path, expect: DatasetIdentity | None) -> ImageDataset:
    version = file_version(path)

    def build(known: str | None) -> DatasetIndex:
        # The fingerprint covers the images: known (from the job) only the labels are read.
        x, labels, names = _npz_arrays(path, labels_only=known is not None)
        fingerprint = known or array_fingerprint(cast(np.ndarray, x), labels)
        return DatasetIndex(DatasetIdentity(version, fingerprint), labels.astype(np.int64), names)

    index = cached_index(f"npz:{path}", version, build, expect)

    @cache
    def images() -> np.ndarray:  # read on first use, once per dataset object
        x, _, _ = _npz_arrays(path)
        return cast(np.ndarray, x)

    return _from_index(ref, index, lambda rows: images()[np.asarray(rows)])


def check_ref(ref: str | DatasetRef) -> DatasetRef:
    """``ref`` parsed, and a builtin name known (reads nothing); raises
    :class:`~zoorank.errors.InvalidInputError` / :class:`~zoorank.errors.UnknownNameError`."""
    parsed = ref if isinstance(ref, DatasetRef) else parse_dataset_ref(ref)
    if parsed.kind == "builtin" and parsed.value not in _BUILTINS:
        raise UnknownNameError(
            f"unknown builtin dataset {parsed.value!r}; known: "
            + ", ".join(f"builtin:{n}" for n in _BUILTINS),
            field="dataset",
        )
    return parsed


def load_dataset(
    ref: str | DatasetRef,
    *,
    data_roots: Sequence[str | Path] = (),
    upload_dir: str | Path | None = None,
    expect: DatasetIdentity | None = None,
) -> ImageDataset:
    """Resolve and load a dataset reference (see :mod:`zoorank.data.refs`).

    Reads no image: the identity and labels come from this process's cache, from ``expect``
    (the identity a job stored, when the data's version is the same) or from one pass over the
    bytes. Raises :class:`InvalidInputError` when the content is not what ``expect`` says.
    """
    parsed = check_ref(ref)
    text = str(parsed)
    if parsed.kind == "builtin":
        index = _builtin_index(parsed.value)
        check_expected(index, expect)
        images, _ = _BUILTINS[parsed.value][0]()
        return _from_index(text, index, lambda rows: images[np.asarray(rows)])
    if parsed.kind == "upload":
        if upload_dir is None:
            raise InvalidInputError("uploads are not enabled here", field="dataset")
        folder = Path(upload_dir) / parsed.value
        if not folder.is_dir():
            raise UnknownNameError(f"no uploaded dataset with id {parsed.value}", field="dataset")
        return _folder(text, folder, expect, upload_id=parsed.value)
    path = resolve_under_roots(parsed.value, data_roots)
    if parsed.kind == "folder":
        return _folder(text, path, expect)
    return _npz(text, path, expect)


def encode_png(image_hw3: np.ndarray) -> bytes:
    """PNG bytes of one uint8 image (used by tests and the upload path)."""
    buffer = io.BytesIO()
    Image.fromarray(image_hw3).save(buffer, format="PNG")
    return buffer.getvalue()
