"""Ground truth and ``validate`` end to end on tiny models (timm's ``test_*`` networks) and
``builtin:digits``: seconds on a CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest

from zoorank.data import load_dataset
from zoorank.errors import InvalidInputError
from zoorank.groundtruth import TrainSettings, compare_with_ground_truth, split_rows, validate
from zoorank.groundtruth.training import check_mode, finetune_accuracy, linear_probe_accuracy
from zoorank.zoo import create_model, get_model_spec

TINY = {
    "train_per_class": 8,
    "val_per_class": 4,
    "test_per_class": 10,
    "input_size": 16,
    "epochs": 2,
    "batch_size": 16,
}
MODELS = ["test_efficientnet@random", "test_resnet@random", "test_byobnet@random"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_split_is_stratified_disjoint_and_seeded() -> None:
    labels = np.repeat(np.arange(3), [10, 12, 15])
    split = split_rows(labels, train=3, val=2, test=4, seed=0)
    assert split.sizes() == {"train": 9, "val": 6, "test": 12}
    for part in (split.train, split.val, split.test):
        np.testing.assert_array_equal(np.bincount(labels[part]), np.bincount(labels[part])[0])
    assert not set(split.train) & set(split.val) | set(split.train) & set(split.test)
    again = split_rows(labels, train=3, val=2, test=4, seed=0)
    np.testing.assert_array_equal(split.test, again.test)
    everything = split_rows(labels, train=3, val=2, test=0, seed=0)
    assert everything.sizes()["test"] == 37 - 15
    with pytest.raises(InvalidInputError, match="class 0 has 10 samples"):
        split_rows(labels, train=8, val=2, test=4, seed=0)


def test_settings_and_modes_are_checked() -> None:
    with pytest.raises(InvalidInputError, match="unknown training setting"):
        TrainSettings.from_dict({"epochz": 3})
    with pytest.raises(InvalidInputError, match="optimizer"):
        TrainSettings.from_dict({"optimizer": "lbfgs"})
    with pytest.raises(InvalidInputError, match="mode"):
        check_mode("probe", "ce", 0.25)
    with pytest.raises(InvalidInputError, match="finetune only"):
        check_mode("linear", "powergrad", 0.25)
    with pytest.raises(InvalidInputError, match="alpha"):
        check_mode("finetune", "powergrad", 2.0)


def test_linear_probe_separable_vs_random() -> None:
    rng = np.random.default_rng(0)
    y = np.arange(90) % 3
    separable = rng.normal(size=(90, 4)) + 5.0 * np.eye(3, 4)[y]
    noise = rng.normal(size=(90, 4))
    parts = (slice(0, 45), slice(45, 60), slice(60, 90))
    acc_sep = linear_probe_accuracy(*[a for p in parts for a in (separable[p], y[p])])[0]
    acc_noise = linear_probe_accuracy(*[a for p in parts for a in (noise[p], y[p])])[0]
    assert acc_sep == 1.0
    assert acc_noise < 0.7


def test_finetune_is_seeded_and_restores_the_best_epoch() -> None:
    dataset = load_dataset("builtin:digits")
    settings = TrainSettings.from_dict(TINY)
    split = split_rows(dataset.labels, train=8, val=4, test=10, seed=0)
    spec = get_model_spec("test_efficientnet@random")
    runs = [finetune_accuracy(create_model(spec), dataset, split, settings, seed=s) for s in (1, 1)]
    assert runs[0].accuracy == runs[1].accuracy
    assert runs[0].history == runs[1].history
    assert 0.0 <= runs[0].accuracy <= 1.0
    best = max(h["val_accuracy"] for h in runs[0].history)
    assert runs[0].val_accuracy == best
    pg = finetune_accuracy(create_model(spec), dataset, split, settings, loss="powergrad", alpha=1.0, seed=1)
    assert pg.history[0]["loss"] == pytest.approx(runs[0].history[0]["loss"], rel=1e-5)


def test_validate_linear_end_to_end_is_json() -> None:
    result = validate(
        "builtin:digits",
        MODELS,
        mode="linear",
        seeds=[0, 1],
        scores=["logme", "hscore"],
        settings=TINY,
        resamples=20,
    )
    assert [g.model for g in result.ground_truth] == MODELS
    assert all(g.error is None and 0.0 <= g.accuracy <= 1.0 for g in result.ground_truth)
    assert {a.score for a in result.agreement} == {"logme", "hscore"}
    assert result.seed_agreement["mean_kendall_tau"] in (1.0, None)  # linear is deterministic
    assert result.split == {"train": 80, "val": 40, "test": 100, "seed": 0}
    text = json.dumps(result.to_dict())
    back = json.loads(text)
    assert back["agreement"][0]["n_models"] == 3
    assert set(back["scores"]["test_resnet@random"]) == {"logme", "hscore"}


def test_validate_finetune_records_a_failing_model(tmp_path) -> None:
    models = ["test_resnet@random", f"test_resnet@file:{tmp_path / 'nope.pth'}"]
    result = validate(
        "builtin:digits",
        models,
        mode="finetune",
        loss="powergrad",
        alpha=0.5,
        seeds=[0],
        scores=[],
        settings={**TINY, "epochs": 1},
        resamples=0,
        data_roots=[tmp_path],
    )
    ok, failed = result.ground_truth
    assert ok.error is None and ok.runs[0].epochs_run == 1
    assert failed.accuracy is None and "does not exist" in failed.error
    assert result.alpha == 0.5 and result.agreement == []
    json.dumps(result.to_dict())


def test_validate_refuses_bad_arguments_before_work() -> None:
    with pytest.raises(InvalidInputError, match="seeds"):
        validate("builtin:digits", MODELS, seeds=[])
    with pytest.raises(InvalidInputError, match="loss"):
        validate("builtin:digits", MODELS, loss="hinge")
    with pytest.raises(InvalidInputError, match="unknown training setting"):
        validate("builtin:digits", MODELS, settings={"lr0": 1})


def test_compare_with_ground_truth_from_stored_numbers() -> None:
    per_seed = {0: {"a": 0.9, "b": 0.5, "a@r": 0.2}, 1: {"a": 0.8, "b": 0.6, "a@r": 0.1}}
    values = {"good": {"a": 3.0, "b": 2.0, "a@r": 1.0}, "bad": {"a": 1.0, "b": 2.0, "a@r": 3.0}}
    found = compare_with_ground_truth(values, {"good": "higher", "bad": "higher"}, per_seed,
                                      twins={"a": "a@r"}, resamples=0)  # fmt: skip
    assert found["accuracy"] == pytest.approx({"a": 0.85, "b": 0.55, "a@r": 0.15})
    good, bad = found["agreement"]
    assert good.kendall_tau == pytest.approx(1.0) and bad.kendall_tau == pytest.approx(-1.0)
    assert found["above_random"] == {"good": {"above": 1, "pairs": 1}, "bad": {"above": 0, "pairs": 1}}
    assert found["seed_agreement"]["mean_kendall_tau"] == pytest.approx(1.0)


def test_early_stopping_waits_for_min_epochs() -> None:
    """A random-init model at chance for its first 2 epochs: patience 1 alone stops it there;
    with min_epochs = epochs every epoch runs, and both train accuracies are reported."""
    dataset = load_dataset("builtin:digits")
    split = split_rows(dataset.labels, train=8, val=4, test=10, seed=0)
    spec = get_model_spec("test_efficientnet@random")
    eager = TrainSettings.from_dict({**TINY, "epochs": 4, "patience": 1})
    assert finetune_accuracy(create_model(spec), dataset, split, eager, seed=1).epochs_run == 2
    settings = TrainSettings.from_dict({**TINY, "epochs": 4, "patience": 1, "min_epochs": 4})
    run = finetune_accuracy(create_model(spec), dataset, split, settings, seed=1)
    assert run.epochs_run == 4 and len(run.history) == 4
    assert 0.0 <= run.train_accuracy <= 1.0 and 0.0 <= run.last_train_accuracy <= 1.0
    with pytest.raises(InvalidInputError, match="min_epochs"):
        TrainSettings.from_dict({**TINY, "min_epochs": 0})
