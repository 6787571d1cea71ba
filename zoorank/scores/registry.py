"""Score registry, in the manner of timm's model registry.

Every score module calls :func:`register_score` at import time with a :class:`ScoreSpec`;
:func:`list_scores` and :func:`get_score` read the registry. Importing ``zoorank.scores``
imports every score module, so the registry is complete after that import.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

from threadpoolctl import ThreadpoolController

from zoorank.errors import InvalidInputError, UnknownNameError
from zoorank.scores.inputs import ScoreInputs, ScoreOutput

Direction = Literal["higher", "lower"]
Cost = Literal["cheap", "moderate", "expensive"]
Need = Literal["features", "logits", "taps", "model", "images", "meta"]

ScoreFn = Callable[..., ScoreOutput]


@dataclass(frozen=True)
class ScoreSpec:
    """What the registry knows of one score.

    ``compute(inputs, **params) -> ScoreOutput`` reads only the fields of
    :class:`ScoreInputs` named in ``needs`` (labels are always there). ``params`` maps each
    parameter name to its default; the registry refuses parameters it does not declare.
    """

    name: str
    family: str
    compute: ScoreFn
    needs: frozenset[Need]
    direction: Direction
    paper: str
    cost: Cost = "cheap"
    params: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    # Optional pool-relative step (e.g. NCTI): the raw outputs of every model of one job ->
    # one normalised value per model, same order. Stored beside the raw value, never instead.
    pool_normalise: Callable[[Sequence[ScoreOutput]], list[float]] | None = None

    def resolve_params(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """Defaults overlaid with ``given``; unknown names or wrong types raise."""
        resolved = dict(self.params)
        for key, value in (given or {}).items():
            if key not in self.params:
                known = ", ".join(sorted(self.params)) or "none"
                raise InvalidInputError(
                    f"score {self.name!r} has no parameter {key!r} (parameters: {known})",
                    field="params",
                )
            resolved[key] = _coerce(self.name, key, value, self.params[key])
        return resolved

    def __call__(self, inputs: ScoreInputs, **params: Any) -> ScoreOutput:
        missing = [need for need in sorted(self.needs) if getattr(inputs, need) is None]
        if missing:
            hint = ""
            if {"images", "model"} & set(missing):
                # Arrays alone (`zoorank score`) cannot carry a model: say what can.
                hint = (
                    "; images and a model come from a forward pass over a dataset: rank one "
                    f"with it (`zoorank rank --dataset REF --scores {self.name}`, or "
                    f'"scores": ["{self.name}"] in POST /v1/jobs)'
                )
            raise InvalidInputError(
                f"score {self.name!r} needs {', '.join(missing)}, which were not given{hint}",
                field=missing[0],
            )
        # One BLAS thread: score-sized problems are small, and on a busy machine OpenBLAS's
        # spinning threads made a 333x333 logistic regression 60x slower (3.3 s vs 0.05 s).
        with _blas_controller().limit(limits=1, user_api="blas"):
            return self.compute(inputs, **self.resolve_params(params))


@cache
def _blas_controller() -> ThreadpoolController:
    """The BLAS libraries, found once: finding them reads the process's memory map, ~9 ms a
    time, which dominated cheap scores called many times (the ranking's resamples). Made on
    the first score call, after numpy and scipy (imported by the score modules) are loaded."""
    return ThreadpoolController()


def _coerce(score: str, key: str, value: Any, default: Any) -> Any:
    """Convert strings from the CLI (``--param k=v``) or JSON to the default's type."""
    if default is None or (isinstance(value, type(default)) and not isinstance(value, bool)):
        return value
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() in {"1", "true", "yes"}:
                    return True
                if value.lower() in {"0", "false", "no"}:
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(default, int):
            as_float = float(value)
            if as_float != int(as_float):
                raise ValueError(value)
            return int(as_float)
        if isinstance(default, float):
            return float(value)
        return type(default)(value)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"score {score!r} parameter {key!r} must be {type(default).__name__}, got {value!r}",
            field="params",
        ) from None


_REGISTRY: dict[str, ScoreSpec] = {}


def register_score(spec: ScoreSpec) -> ScoreSpec:
    """Add ``spec`` to the registry; a second score of the same name is an error."""
    if spec.name in _REGISTRY:
        raise ValueError(f"score {spec.name!r} is registered twice")
    if spec.direction not in ("higher", "lower"):
        raise ValueError(f"score {spec.name!r}: direction must be 'higher' or 'lower'")
    _REGISTRY[spec.name] = spec
    return spec


def list_scores(pattern: str = "*") -> list[str]:
    """Names of registered scores matching a shell-style ``pattern``, sorted."""
    _ensure_loaded()
    return sorted(name for name in _REGISTRY if fnmatch.fnmatch(name, pattern))


def get_score(name: str) -> ScoreSpec:
    """The spec registered as ``name``; :class:`UnknownNameError` says which names exist."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown score {name!r}; known scores: {', '.join(sorted(_REGISTRY))}",
            field="scores",
        ) from None


def _ensure_loaded() -> None:
    import zoorank.scores  # noqa: F401  (imports every score module)
