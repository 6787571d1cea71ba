"""The service's own datasets and models: uploads and model registration."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from zoorank_app import archives
from zoorank_app.db import crud
from zoorank_app.db.models import Dataset
from zoorank_app.settings import Settings

from zoorank.data import load_dataset
from zoorank.data.refs import resolve_under_roots
from zoorank.data.subsample import check_class_counts
from zoorank.errors import ConflictError, InvalidInputError, TooLargeError
from zoorank.zoo import ModelSpec


def add_upload(settings: Settings, session: Any, stream: BinaryIO, *, name: str) -> tuple[Dataset, bool]:
    """Store an uploaded archive of CLASS/IMAGE files as a dataset (``upload:ID``, ID from the
    archive's hash) and return its row and whether it is new. Streams the archive to disk within
    the size limit, extracts it safely (:mod:`app.archives`), checks the classes and decodes
    every image (in chunks, so memory stays bounded).

    Deduplicated: an archive whose content (the dataset's fingerprint: class folders, file names
    and bytes) equals a stored dataset's is that dataset, whatever its packing (zip or tar, a top
    folder, compression): its row comes back with ``False`` and nothing new is kept.

    Raises:
        TooLargeError: the archive is larger than ``max_upload_mb``.
        InvalidInputError: an unsafe or corrupt archive, too few images per class, an image that
            does not decode or is too large.
    """
    settings.ensure_dirs()
    limit = settings.max_upload_mb * 1024 * 1024
    with tempfile.TemporaryDirectory(dir=settings.upload_dir) as tmp:
        archive_path = Path(tmp) / "upload"
        digest = hashlib.sha256()
        size = 0
        with archive_path.open("wb") as out:
            while chunk := stream.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise TooLargeError(f"archive is larger than {settings.max_upload_mb} MB", field="file")
                digest.update(chunk)
                out.write(chunk)
        dataset_id = digest.hexdigest()[:32]
        target = settings.upload_dir / dataset_id
        if (same := session.get(Dataset, dataset_id)) is not None and target.exists():
            return same, False  # the very same archive again
        if not target.exists():
            staging = Path(tmp) / "extract"
            archives.extract_class_folders(
                archive_path, staging, max_files=settings.max_archive_files, max_bytes=limit * 10
            )
            shutil.move(str(staging), target)
    try:
        dataset = load_dataset(f"upload:{dataset_id}", upload_dir=settings.upload_dir)
        check_class_counts(dataset.labels, min_per_class=2, class_names=dataset.class_names)
        for start in range(0, len(dataset), 32):  # every image must decode (and not be a bomb)
            dataset.read(np.arange(start, min(start + 32, len(dataset))))  # 32 x 224 x 224 x 3: 5 MB
    except InvalidInputError:
        shutil.rmtree(target, ignore_errors=True)
        raise
    same = crud.dataset_by_fingerprint(session, dataset.fingerprint)
    if same is not None:
        if same.id != dataset_id:
            shutil.rmtree(target, ignore_errors=True)
        return same, False
    return (
        crud.add_dataset(
            session,
            Dataset(
                id=dataset_id,
                name=name or dataset_id,
                fingerprint=dataset.fingerprint,
                num_images=len(dataset),
                num_classes=dataset.num_classes,
                class_names=dataset.class_names,
            ),
        ),
        True,
    )


def register_model(
    settings: Settings,
    session: Any,
    *,
    name: str,
    architecture: str,
    weights: str,
    imagenet_top1: float | None,
    description: str,
) -> ModelSpec:
    """A model in the service's own registry (the database), beside the built-in zoo that the
    library and the CLI know. A ``file:`` weight is loaded and checked now, not in a worker."""
    from zoorank.zoo import list_models, parse_model_ref

    if name in list_models():
        raise ConflictError(f"model {name!r} exists in the built-in zoo", field="name")
    if any(r.name == name for r in crud.registered_models(session)):
        raise ConflictError(f"model {name!r} is already registered", field="name")
    if weights == "offline":
        raise InvalidInputError("offline weights are already in the built-in zoo", field="weights")
    parsed = parse_model_ref(f"{architecture}@{weights}")
    if parsed.weights.startswith("file:"):
        path = resolve_under_roots(
            parsed.weights[5:], settings.data_roots, field="weights", what="weight file"
        )
        from zoorank.zoo.load import create_model

        spec = ModelSpec(name, parsed.architecture, f"file:{path}", imagenet_top1)
        create_model(spec)
    else:
        top1 = imagenet_top1 if imagenet_top1 is not None else parsed.imagenet_top1
        spec = ModelSpec(name, parsed.architecture, parsed.weights, top1)
    crud.add_model(session, spec, description)
    return spec
