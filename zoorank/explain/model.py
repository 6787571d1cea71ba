"""One model's layer-tree explanation on one dataset, in-process (``zoorank explain``).

The explanation is the ``layer_tree_fidelity`` score's details: the same pass, features cache
and options as a ranking job, so what ``zoorank explain`` prints is what a job stores.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoorank.errors import ZoorankError

if TYPE_CHECKING:
    from zoorank.features.cache import FeatureCache

EXPLAIN_SCORE = "layer_tree_fidelity"


def explain_model(
    dataset_ref: str,
    model: str,
    options: Any = None,
    *,
    cache_dir: str | Path | None = None,
    cache: FeatureCache | None = None,
    data_roots: Sequence[str | Path] = (),
    upload_dir: str | Path | None = None,
) -> dict[str, Any]:
    """``{"model", "dataset", "value", "seconds", "feature_seconds", "params", "details"}``.

    Features are cached in ``cache`` (``FeatureCache.from_settings``: bounded by the setting),
    or without bound in ``cache_dir``.

    Raises:
        ZoorankError: an unknown model or dataset, unusable data, or a failure of the model's
            pass or of the explanation (the message says which).
    """
    from zoorank.features.cache import FeatureCache
    from zoorank.rank import RankOptions, prepare_dataset, resolve_models, score_model

    options = options or RankOptions()
    options.validate()
    (spec,) = resolve_models([model], data_roots=data_roots)
    prepared = prepare_dataset(dataset_ref, options, data_roots=data_roots, upload_dir=upload_dir)
    if cache is None and cache_dir is not None:
        cache = FeatureCache(cache_dir)
    result = score_model(prepared, spec, [EXPLAIN_SCORE], options, cache=cache)
    record = result.scores.get(EXPLAIN_SCORE)
    if result.error or record is None or record.error:
        reason = result.error or (record.error if record else "no result")
        raise ZoorankError(f"{model} could not be explained on {dataset_ref}: {reason}")
    return {
        "model": spec.name,
        "dataset": dataset_ref,
        "value": record.value,
        "seconds": record.seconds,
        "feature_seconds": result.feature_seconds,
        "params": record.params,
        "details": record.details,
    }
