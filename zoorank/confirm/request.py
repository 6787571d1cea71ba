"""What a confirmation asks for, checked once for the library, the CLI and the API.

Defaults are chosen out of sample by ``benchmarks/confirm.py`` (``benchmarks/results/confirm.md``,
"Defaults chosen out of sample"): leaving one target out, the rule picked ``top_k = 5`` on 6 of 8
held-out targets (``k = 2`` on the other two) and a budget that never bound, so the default
budget is none (the schedule's own cost, which a dry run states before anything starts).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from zoorank.errors import InvalidInputError
from zoorank.values import as_number

if TYPE_CHECKING:
    from zoorank.groundtruth.training import TrainSettings

DEFAULT_TOP_K = 5
DEFAULT_ETA = 2
BUDGET_UNITS = ("images", "seconds")
MAX_TOP_K = 64

# The trainer's settings for a confirmation, unless the request overrides them: a validation
# split of 20 rows per class (never trained on), up to 50 fine-tune rows per class, 6 epochs.
DEFAULT_SETTINGS: dict[str, Any] = {"train_per_class": 50, "val_per_class": 20, "epochs": 6}


@dataclass
class ConfirmRequest:
    """A confirmation of a ranking's shortlist by successive halving over fine-tuning epochs.

    ``top_k``: how many of the best-ranked models to fine-tune (clamped to the models ranked);
    ``budget``: a cap in ``budget_unit`` (``images``: image passes, one image through a network
    in training or validation; ``seconds``: estimated seconds on the worker), None for the
    schedule's own cost; ``loss``: ``ce`` or ``powergrad`` (with ``alpha``), as in ``validate``;
    ``eta``: each rung keeps ``1/eta`` of the models; ``seed``: head initialisation and batch
    order; ``settings``: the trainer's :class:`TrainSettings` (``epochs`` is the full schedule,
    ``val_per_class`` the validation rows per class, ``train_per_class`` the fine-tune rows per
    class, ``<= 0`` all the rest)."""

    top_k: int = DEFAULT_TOP_K
    budget: float | None = None
    budget_unit: str = "images"
    loss: str = "ce"
    alpha: float = 0.25
    eta: int = DEFAULT_ETA
    seed: int = 0
    settings: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SETTINGS))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> ConfirmRequest:
        """From JSON or CLI options; unknown names refused with the known ones."""
        values = {k: v for k, v in dict(values or {}).items() if v is not None or k == "budget"}
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidInputError(
                f"unknown confirmation option(s) {', '.join(unknown)}; options: {', '.join(sorted(known))}",
                field=unknown[0],
            )
        out = cls()
        if "top_k" in values:
            out.top_k = as_number(values["top_k"], "top_k", int)
        if values.get("budget") is not None:
            out.budget = as_number(values["budget"], "budget", float)
        for name in ("budget_unit", "loss"):
            if name in values:
                if not isinstance(values[name], str):
                    raise InvalidInputError(f"{name} must be a string, got {values[name]!r}", field=name)
                setattr(out, name, values[name])
        if "alpha" in values:
            out.alpha = as_number(values["alpha"], "alpha", float)
        if "eta" in values:
            out.eta = as_number(values["eta"], "eta", int)
        if "seed" in values:
            out.seed = as_number(values["seed"], "seed", int)
        if "settings" in values:
            if not isinstance(values["settings"], Mapping):
                raise InvalidInputError("settings must be an object of training settings", field="settings")
            out.settings = {**DEFAULT_SETTINGS, **values["settings"]}
        out.validate()
        return out

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` naming the first bad field."""
        if not 1 <= self.top_k <= MAX_TOP_K:
            raise InvalidInputError(
                f"top_k must be between 1 and {MAX_TOP_K} (how many of the best-ranked models to"
                f" fine-tune), got {self.top_k}",
                field="top_k",
            )
        if self.budget is not None and (not math.isfinite(self.budget) or self.budget <= 0):
            raise InvalidInputError(
                f"budget must be a positive number of {self.budget_unit}, or left out for the schedule's"
                f" own cost; got {self.budget!r}",
                field="budget",
            )
        if self.budget_unit not in BUDGET_UNITS:
            raise InvalidInputError(
                f"budget_unit must be one of {', '.join(BUDGET_UNITS)}, got {self.budget_unit!r}",
                field="budget_unit",
            )
        from zoorank.groundtruth.powergrad import LOSSES, make_loss

        if self.loss not in LOSSES:
            raise InvalidInputError(
                f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}", field="loss"
            )
        make_loss(self.loss, self.alpha)
        if not 2 <= self.eta <= 8:
            raise InvalidInputError(f"eta must be between 2 and 8, got {self.eta}", field="eta")
        if self.seed < 0:
            raise InvalidInputError(f"seed must be >= 0, got {self.seed}", field="seed")
        self.train_settings()

    def train_settings(self) -> TrainSettings:
        """The trainer's settings (validated)."""
        from zoorank.groundtruth.training import TrainSettings

        return TrainSettings.from_dict(self.settings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "top_k": self.top_k,
            "budget": self.budget,
            "budget_unit": self.budget_unit,
            "loss": self.loss,
            "alpha": self.alpha,
            "eta": self.eta,
            "seed": self.seed,
            "settings": self.train_settings().to_dict(),
        }
