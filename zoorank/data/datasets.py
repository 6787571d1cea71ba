"""Load a dataset reference as labelled uint8 RGB images with a content fingerprint.

Images are ``(h, w, 3)`` uint8. Builtin sets are held in memory; folder and upload sets read
only the files asked for (after subsampling), each resized to a square canonical size so a
batch stacks. The fingerprint is a sha256 over the sorted manifest (relative path or index,
label, content hash), so results and caches are keyed by content, not by path.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from zoorank.data.refs import DatasetRef, parse_dataset_ref, resolve_under_roots
from zoorank.errors import InvalidInputError, UnknownNameError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
CANONICAL_SIZE = 224  # folder images are resized to this square on load
MAX_IMAGE_PIXELS = 50_000_000  # per image (width x height), the documented limit; checked in _load_image
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)

Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


@dataclass
class ImageDataset:
    """Labels and class names of a dataset, a content fingerprint and an image reader.

    ``read(rows) -> (m, h, w, 3) uint8`` returns the images of the given row indices.
    """

    ref: str
    labels: np.ndarray
    class_names: list[str]
    fingerprint: str
    read: Callable[[np.ndarray], np.ndarray]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _gray_to_rgb_uint8(images: np.ndarray, max_value: float) -> np.ndarray:
    scaled = np.clip(np.rint(images.astype(np.float64) * (255.0 / max_value)), 0, 255)
    return np.repeat(scaled.astype(np.uint8)[..., None], 3, axis=-1)


def _array_fingerprint(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(str(array.shape).encode() + str(array.dtype).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _in_memory(ref: str, images: np.ndarray, labels: np.ndarray, names: list[str]) -> ImageDataset:
    return ImageDataset(
        ref=ref,
        labels=labels.astype(np.int64),
        class_names=names,
        fingerprint=_array_fingerprint(images, labels),
        read=lambda rows: images[np.asarray(rows)],
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


def list_builtin_datasets() -> list[dict[str, object]]:
    """Catalogue of builtin datasets with whether each is installed here."""
    return [
        {
            "ref": f"builtin:{name}",
            "description": description,
            "classes": len(names),
            "available": name != "fashion-mnist" or _find_fashion_mnist() is not None,
        }
        for name, (_, names, description) in _BUILTINS.items()
    ]


def _load_image(path: Path) -> np.ndarray:
    """One image of a folder or upload, as ``(CANONICAL_SIZE, CANONICAL_SIZE, 3)`` uint8: the one
    place images are opened, so the pixel limit holds for every dataset."""
    try:
        with Image.open(path) as image:  # reads the header only
            if image.width * image.height > MAX_IMAGE_PIXELS:  # PIL itself refuses only above 2x
                raise _too_large(path, f"{image.width}x{image.height}")
            image.draft("RGB", (CANONICAL_SIZE, CANONICAL_SIZE))
            rgb = image.convert("RGB").resize((CANONICAL_SIZE, CANONICAL_SIZE), Image.Resampling.BILINEAR)
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


def _too_large(path: Path, size: str) -> InvalidInputError:
    return InvalidInputError(
        f"image {_shown(path)} is {size}, more than the limit of {MAX_IMAGE_PIXELS // 10**6} megapixels "
        f"({MAX_IMAGE_PIXELS:,} pixels); scale it down",
        field="dataset",
    )


def _shown(path: Path) -> str:
    """An image's name as users know it, relative to its dataset: ``CLASS/FILE``."""
    return f"{path.parent.name}/{path.name}"


def _folder(ref: str, root: Path) -> ImageDataset:
    if not root.is_dir():
        raise InvalidInputError(f"dataset folder {root} does not exist", field="dataset")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files: list[Path] = []
    labels: list[int] = []
    digest = hashlib.sha256()
    for label, name in enumerate(classes):
        for path in sorted((root / name).iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not path.is_symlink():
                files.append(path)
                labels.append(label)
                digest.update(f"{name}/{path.name}\0".encode())
                digest.update(hashlib.sha256(path.read_bytes()).digest())
    if not files:
        raise InvalidInputError(
            f"dataset folder {root} holds no images in class subfolders (expected ROOT/CLASS/IMAGE)",
            field="dataset",
        )
    return ImageDataset(
        ref=ref,
        labels=np.asarray(labels, dtype=np.int64),
        class_names=classes,
        fingerprint=digest.hexdigest(),
        read=lambda rows: np.stack([_load_image(files[int(i)]) for i in np.asarray(rows)]),
    )


def _npz(ref: str, path: Path) -> ImageDataset:
    try:
        with np.load(path, allow_pickle=False) as archive:
            x, y = archive["x"], archive["y"]
    except (OSError, KeyError, ValueError) as exc:
        raise InvalidInputError(
            f"{path.name} must be an .npz with arrays 'x' (n,h,w[,c]) and 'y' (n,): {exc}",
            field="dataset",
        ) from None
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
    names, labels = np.unique(y, return_inverse=True)
    return _in_memory(ref, x, labels, [str(n) for n in names])


def load_dataset(
    ref: str | DatasetRef,
    *,
    data_roots: Sequence[str | Path] = (),
    upload_dir: str | Path | None = None,
) -> ImageDataset:
    """Resolve and load a dataset reference (see :mod:`zoorank.data.refs`)."""
    parsed = ref if isinstance(ref, DatasetRef) else parse_dataset_ref(ref)
    text = str(parsed)
    if parsed.kind == "builtin":
        if parsed.value not in _BUILTINS:
            raise UnknownNameError(
                f"unknown builtin dataset {parsed.value!r}; known: "
                + ", ".join(f"builtin:{n}" for n in _BUILTINS),
                field="dataset",
            )
        loader, names, _ = _BUILTINS[parsed.value]
        images, labels = loader()
        return _in_memory(text, images, labels, list(names))
    if parsed.kind == "upload":
        if upload_dir is None:
            raise InvalidInputError("uploads are not enabled here", field="dataset")
        folder = Path(upload_dir) / parsed.value
        if not folder.is_dir():
            raise UnknownNameError(f"no uploaded dataset with id {parsed.value}", field="dataset")
        return _folder(text, folder)
    path = resolve_under_roots(parsed.value, data_roots)
    if parsed.kind == "folder":
        return _folder(text, path)
    return _npz(text, path)


def encode_png(image_hw3: np.ndarray) -> bytes:
    """PNG bytes of one uint8 image (used by tests and the upload path)."""
    buffer = io.BytesIO()
    Image.fromarray(image_hw3).save(buffer, format="PNG")
    return buffer.getvalue()
