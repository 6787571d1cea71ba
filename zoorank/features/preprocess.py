"""The model's own preprocessing (timm's ``resolve_data_config``), applied to uint8 batches."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Preprocessing:
    """Resize to ``size`` x ``size`` with ``interpolation``, then ``(x/255 - mean) / std``.

    Images are resized whole (no centre crop): target sets here are small, centred images.
    """

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str

    def key(self) -> dict[str, object]:
        return asdict(self)

    def __call__(self, images_bhwc: np.ndarray) -> torch.Tensor:
        """uint8 ``(b, h, w, 3)`` -> float32 ``(b, 3, size, size)`` normalised tensor."""
        x = torch.from_numpy(np.ascontiguousarray(images_bhwc)).permute(0, 3, 1, 2).float() / 255.0
        if x.shape[-2:] != (self.size, self.size):
            mode = "bicubic" if self.interpolation == "bicubic" else "bilinear"
            x = F.interpolate(
                x,
                size=(self.size, self.size),
                mode=mode,
                align_corners=False,
                antialias=x.shape[-1] > self.size,
            )
            x = x.clamp_(0.0, 1.0)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - mean) / std


def model_preprocessing(model: nn.Module, input_size: int | None = None) -> Preprocessing:
    """The model's timm data config; ``input_size`` overrides its native resolution."""
    from timm.data import resolve_data_config

    return _from_data_config(resolve_data_config({}, model=model), input_size)


def architecture_preprocessing(architecture: str, input_size: int | None = None) -> Preprocessing:
    """The same as :func:`model_preprocessing`, read from timm's pretrained config of the
    architecture without building the network (it depends only on the architecture)."""
    import timm
    from timm.data import resolve_data_config

    pretrained_cfg = timm.models.get_pretrained_cfg(architecture)
    if pretrained_cfg is None:  # no config registered: let the model resolve its defaults
        return model_preprocessing(timm.create_model(architecture, pretrained=False), input_size)
    return _from_data_config(resolve_data_config({}, pretrained_cfg=pretrained_cfg.to_dict()), input_size)


def _from_data_config(config: dict[str, Any], input_size: int | None) -> Preprocessing:
    size = int(input_size or config["input_size"][-1])
    return Preprocessing(
        size=size,
        mean=tuple(float(v) for v in config["mean"]),  # type: ignore[arg-type]
        std=tuple(float(v) for v in config["std"]),  # type: ignore[arg-type]
        interpolation=str(config.get("interpolation", "bilinear")),
    )
