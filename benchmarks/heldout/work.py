"""The held-out benchmark's units of work, cached per kind in ``benchmarks/results/heldout/KIND.jsonl.gz``.

* ``scores`` (target, model): every score a default job computes, at the job defaults
  (:class:`zoorank.rank.RankOptions` ``()``), through ``zoorank.rank.score_model`` and the
  service's :class:`~zoorank.features.cache.FeatureCache`;
* ``train`` (target, model, seed): full fine-tuning (``zoorank.groundtruth.finetune_accuracy``) at
  64 px with the target's split, its test, validation and final train accuracy;
* ``extra`` and ``trees`` (target, model): the expensive scores a job computes only when asked
  (Betti variants; layer-tree fidelity), see :data:`EXTRA_KINDS`.

A unit is stored under its id (``target/model[__sSEED]``) in its kind's
:class:`~benchmarks.unitcache.UnitCache` (committed, compact) with its key: sha256 of the model's
weights digest, the target's content fingerprint, the settings (score options or training
schedule) and the seed. A unit is redone only when its key changes, so adding a target or a model
computes only what is new. The layer-tree units' saliency arrays (:data:`BULK`, read by no
report) go to ``benchmarks/cache/heldout/bulk/`` instead; :func:`unit_bulk` recomputes them when
missing. Several worker processes share the queue: a unit is claimed by creating its lock file
exclusively.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
import traceback
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

from zoorank.errors import ZoorankError
from zoorank.groundtruth import TrainSettings

from ..ranking.zoo import ZooModel
from ..unitcache import BulkPath, UnitCache, split_bulk
from .targets import TARGET_DIR, TARGETS, Target

log = logging.getLogger(__name__)

RESULTS = Path("benchmarks/results/heldout")
CACHE = Path("benchmarks/cache/heldout")
SEEDS = (0, 1)
# Unit kinds for scores a job computes only when asked (expensive): kind -> scores.
EXTRA_KINDS: dict[str, tuple[str, ...]] = {
    "extra": ("betti_decay", "betti_auc"),
    "trees": ("layer_tree_fidelity",),
}
EXTRA_DATA_ROOTS: list[Path] = []  # tests add their own folders
# Per kind, the fields no report reads, kept out of the committed cache (see the module doc).
BULK: dict[str, tuple[BulkPath, ...]] = {"trees": (("records", "*", "details", "saliency"),)}
KINDS = ("scores", "train", *EXTRA_KINDS, "calib")
# Every run sees at least this many optimiser steps (and 8 epochs), so that random-init
# models train too on the small targets. Every epoch runs (min_epochs = epochs): with early
# stopping from epoch 1, random-init runs ended after 4 epochs at chance (results of commit
# b8b7653); the best validation epoch's weights are still the ones tested.
MIN_STEPS = 120
MIN_EPOCHS = 8


def train_settings(target: Target) -> TrainSettings:
    """The fine-tuning schedule of one target (64 px, AdamW, cosine, early stopping)."""
    batch = 32
    steps_per_epoch = max(1, target.train_per_class * _num_classes(target.ref) // batch)
    epochs = max(MIN_EPOCHS, math.ceil((target.min_steps or MIN_STEPS) / steps_per_epoch))
    return TrainSettings(
        train_per_class=target.train_per_class,
        val_per_class=target.val_per_class,
        test_per_class=target.test_per_class,
        split_seed=0,
        input_size=64,
        epochs=epochs,
        batch_size=batch,
        lr=1e-3,
        weight_decay=0.05,
        patience=3,
        min_epochs=epochs,
        device="cpu",
    )


@cache
def _dataset(ref: str) -> Any:
    from zoorank.data import load_dataset

    return load_dataset(ref, data_roots=[TARGET_DIR, *EXTRA_DATA_ROOTS])


def _num_classes(ref: str) -> int:
    return int(_dataset(ref).num_classes)


def _digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Unit:
    kind: str  # scores | train | extra | trees | calib
    target: Target
    model: ZooModel
    seed: int = 0

    @property
    def name(self) -> str:
        safe = self.model.label.replace("/", "__").replace("@", "_at_")
        suffix = f"__s{self.seed}" if self.kind == "train" else ""
        return f"{self.kind}/{self.target.name}/{safe}{suffix}"

    @property
    def id(self) -> str:
        """The unit's id in its kind's cache (its name without the kind)."""
        return self.name.split("/", 1)[1]

    def stored(self) -> dict[str, Any] | None:
        """The cached unit (None when it was never done)."""
        return unit_cache(self.kind).get(self.id)

    def key(self) -> dict[str, Any]:
        from zoorank.zoo import get_model_spec, weights_digest

        spec = get_model_spec(self.model.ref)
        base: dict[str, Any] = {
            "kind": self.kind,
            "weights": weights_digest(spec),
            "architecture": spec.architecture,
            "dataset": _dataset(self.target.ref).fingerprint,
        }
        if self.kind == "train":
            return base | {"settings": train_settings(self.target).to_dict(), "seed": self.seed, "loss": "ce"}
        if self.kind == "calib":
            return base | {
                "options": score_options().to_dict(),
                "scores": calib_scores(),
            }
        return base | {"options": score_options().to_dict(), "scores": score_names(self.kind)}

    def done(self) -> bool:
        stored = self.stored()
        return stored is not None and stored.get("key_digest") == _digest(self.key())


# The populations added for issue 21 are fine-tuned with one seed on the targets their second
# seed had not reached (the session's CPU time); the ground truth of a (target, model) is the
# mean over the seeds it has, and seed-to-seed agreement is measured on the models with both.
ONE_SEED_KINDS = ("intermediate", "scratch-glyphs")


def seeds_of(model: ZooModel) -> tuple[int, ...]:
    """The training seeds a model's ground truth needs (see :data:`ONE_SEED_KINDS`)."""
    return SEEDS[:1] if model.kind in ONE_SEED_KINDS else SEEDS


def score_options() -> Any:
    """The job defaults, on the CPU; the ranking's resamples are computed by the ``calib``
    units for the scores the chosen default uses, not for every score here."""
    from zoorank.rank import RankOptions

    return RankOptions(device="cpu", bootstrap_resamples=0)


def calib_scores() -> list[str]:
    """The scores the calibration check resamples: every score of the policies the held-out
    selection fitted (written by ``analyse``)."""
    path = RESULTS / "calib_scores.json"
    return json.loads(path.read_text()) if path.exists() else []


def score_names(kind: str) -> list[str]:
    """The scores a unit of ``kind`` computes: for ``scores``, every score that is not
    ``expensive`` (the candidates of the default ranking; a default job computes only those
    its policy uses)."""
    from zoorank.scores import get_score, list_scores

    if kind in EXTRA_KINDS:
        return list(EXTRA_KINDS[kind])
    return [n for n in list_scores() if get_score(n).cost != "expensive"]


def units(models: list[ZooModel], targets: tuple[Target, ...] = TARGETS) -> list[Unit]:
    """Every unit, in the order they are worked on: per target its scores then its training
    runs (whole targets finish first), then the expensive extras of every target."""
    out: list[Unit] = []
    for target in targets:
        out += [Unit("scores", target, m) for m in models]
        out += [Unit("train", target, m, seed) for seed in SEEDS for m in models if seed in seeds_of(m)]
    out += [Unit(kind, t, m) for kind in EXTRA_KINDS for t in targets for m in models]
    out += [Unit("calib", t, m) for t in targets for m in models]
    return out


def _claim(unit: Unit) -> bool:
    lock = CACHE / "locks" / f"{unit.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def _release(unit: Unit) -> None:
    (CACHE / "locks" / f"{unit.name}.lock").unlink(missing_ok=True)


def clear_locks() -> None:
    for lock in (CACHE / "locks").rglob("*.lock"):
        lock.unlink()


def unit_cache(kind: str) -> UnitCache:
    """The cache of the units of ``kind`` (read at call time: tests point RESULTS elsewhere)."""
    return UnitCache(RESULTS / f"{kind}.jsonl.gz", CACHE / "bulk" / kind, BULK.get(kind, ()))


def cached(kind: str, target: str) -> list[dict[str, Any]]:
    """Every cached unit of ``kind`` on ``target`` (any key; readers check the settings)."""
    return unit_cache(kind).under(target)


def unit_bulk(unit: Unit) -> dict[str, Any]:
    """The bulk fields of a done unit (:data:`BULK`), recomputed with the unit's own code and
    stored in the bulk folder when this machine does not have them."""
    cache = unit_cache(unit.kind)
    found = cache.bulk(unit.id)
    if found is None:
        stored = unit.stored()
        if stored is None or stored.get("key_digest") != _digest(unit.key()):
            raise ValueError(f"{unit.name} is not done with the current key: run the benchmark first")
        found = split_bulk(run_scores(unit), cache.bulk_paths)[1]
        cache.put_bulk(unit.id, found)
    return found


def run_scores(unit: Unit) -> dict[str, Any]:
    from zoorank.features.cache import FeatureCache
    from zoorank.rank import prepare_dataset, score_model
    from zoorank.zoo import get_model_spec

    options = score_options()
    prepared = prepare_dataset(unit.target.ref, options, data_roots=[TARGET_DIR, *EXTRA_DATA_ROOTS])
    result = score_model(
        prepared,
        get_model_spec(unit.model.ref),
        score_names(unit.kind),
        options,
        cache=FeatureCache(CACHE / "features"),
    )
    return {
        "error": result.error,
        "feature_seconds": result.feature_seconds,
        "from_cache": result.from_cache,
        "records": {name: asdict(record) for name, record in result.scores.items()},
        "versions": result.versions,
    }


def run_calib(unit: Unit) -> dict[str, Any]:
    """The ranking's resamples of :func:`calib_scores`, from the cached forward pass of the
    ``scores`` unit, for the scores a job would resample within its budget (timed by that
    unit, as a job times its own pass)."""
    from zoorank.features.cache import FeatureCache
    from zoorank.rank import get_features, prepare_dataset, score_inputs
    from zoorank.scores import get_score
    from zoorank.uncertainty import bootstrap_values, budgeted
    from zoorank.zoo import get_model_spec

    options = score_options()
    spec = get_model_spec(unit.model.ref)
    prepared = prepare_dataset(unit.target.ref, options, data_roots=[TARGET_DIR, *EXTRA_DATA_ROOTS])
    features, _, _ = get_features(prepared, spec, options, FeatureCache(CACHE / "features"))
    inputs = score_inputs(prepared.labels, features, spec, options.seed)
    resamples = type(options)().bootstrap_resamples  # what a default job resamples
    scored = Unit("scores", unit.target, unit.model).stored()
    if scored is None:
        raise RuntimeError(f"{unit.name} needs its scores unit: run the scores kind first")
    # Each score timed again here, as a job times it (the scores units were timed before a
    # fixed per-call overhead of ~9 ms was removed); the model's own cost from that unit.
    seconds = {}
    for name in calib_scores():
        if scored["records"].get(name, {}).get("value") is not None:
            began = time.perf_counter()
            get_score(name)(inputs)
            seconds[name] = time.perf_counter() - began
    model_seconds = scored["feature_seconds"] + sum(r["seconds"] for r in scored["records"].values())
    # What a job whose policy uses every calib score would resample (analyse reads back each
    # fold's own choice, a subset when its policy uses fewer scores).
    chosen = budgeted(list(seconds), seconds, model_seconds, resamples=resamples)
    boot = bootstrap_values(inputs, chosen, {}, resamples=resamples, seed=options.seed)
    return {"error": None, "bootstrap": boot, "seconds_by_score": seconds, "model_seconds": model_seconds}


def run_train(unit: Unit) -> dict[str, Any]:
    from zoorank.groundtruth.training import finetune_accuracy
    from zoorank.zoo import create_model, get_model_spec

    settings = train_settings(unit.target)
    dataset = _dataset(unit.target.ref)
    split = settings.split(dataset.labels)
    try:
        run = finetune_accuracy(
            create_model(get_model_spec(unit.model.ref)), dataset, split, settings, seed=unit.seed
        )
    except Exception as exc:  # diverged or broken: recorded, never dropped silently
        return {"error": f"{type(exc).__name__}: {exc}", "split": split.sizes()}
    return {"error": None, "run": asdict(run), "split": split.sizes()}


def work(
    models: list[ZooModel],
    *,
    kinds: tuple[str, ...] = KINDS,
    targets: tuple[Target, ...] = TARGETS,
) -> int:
    """Work through every unit not yet done (claiming each); returns how many this process did."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    done = 0
    for unit in units(models, targets):
        if unit.kind not in kinds or (unit.kind == "calib" and not calib_scores()):
            continue
        if unit.done() or not _claim(unit):
            continue
        try:
            if unit.done():  # finished by another worker between the check and the claim
                continue
            began = time.perf_counter()
            try:
                with threadpool_limits(limits=1):
                    run = {"scores": run_scores, "train": run_train, "calib": run_calib}
                    run |= {kind: run_scores for kind in EXTRA_KINDS}
                    payload = run[unit.kind](unit)
            except ZoorankError as exc:  # bad input (e.g. a one-class target): recorded, not retried
                payload = {"error": f"{type(exc).__name__}: {exc}"}
            key = unit.key()
            payload |= {
                "unit": unit.name,
                "target": unit.target.name,
                "ref": unit.target.ref,
                "model": unit.model.label,
                "model_ref": unit.model.ref,
                "seed": unit.seed,
                "key": key,
                "key_digest": _digest(key),
                "seconds": time.perf_counter() - began,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            unit_cache(unit.kind).put(unit.id, payload)
            done += 1
            summary = payload.get("run", {}).get("accuracy") if unit.kind == "train" else None
            log.info("%s %.1fs %s %s", unit.name, payload["seconds"], summary, payload.get("error") or "")
        except Exception:  # a bug or a broken environment: logged, the unit stays to do
            log.error("unit %s failed:\n%s", unit.name, traceback.format_exc())
        finally:
            _release(unit)
    return done


def worker(kinds: tuple[str, ...], model_kinds: tuple[str, ...] = ()) -> int:
    """One worker process: its own logging, the pool (already built), every unit it can claim
    (of models of ``model_kinds`` only, when given)."""
    from .pool import build_pool

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(message)s", datefmt="%H:%M:%S")
    models = [m for m in build_pool(CACHE) if not model_kinds or m.kind in model_kinds]
    return work(models, kinds=kinds)
