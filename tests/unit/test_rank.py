"""The pipeline: ranks, options, the pretrained-vs-random check."""

from __future__ import annotations

import pytest

from zoorank.errors import InvalidInputError, UnknownNameError
from zoorank.rank import RankOptions, rank, rank_models, resolve_models, resolve_scores


def test_rank_models_hand_computed():
    values = {"a": {"s": 3.0, "t": 0.1}, "b": {"s": 1.0, "t": 0.3}, "c": {"s": 2.0, "t": None}}
    out = rank_models(values, {"s": "higher", "t": "lower"})
    assert out["by_score"] == {"s": ["a", "c", "b"], "t": ["a", "b"]}
    # a: ranks 1 and 1 -> 1; b: ranks 3 and 2 -> 2.5; c: rank 2 on s, missing t ranks last
    # (3) -> 2.5, tied with b: they share place 2 (a name never breaks a tie). The value is
    # minus the mean rank.
    assert [(r["model"], r["value"], r["rank"]) for r in out["aggregate"]] == [
        ("a", -1.0, 1),
        ("b", -2.5, 2),
        ("c", -2.5, 2),
    ]
    assert out["rule"].startswith("mean rank over the chosen scores")


def test_the_policy_decides_the_top_line_and_every_score_is_still_ranked():
    from zoorank.policy import RankingPolicy

    values = {"a": {"leep": 1.0, "betti_decay": 9.0}, "b": {"leep": 0.0, "betti_decay": 0.0}}
    policy = RankingPolicy("leep-only", "weighted_z", ("leep",), (1.0,))
    out = rank_models(values, {"leep": "higher", "betti_decay": "lower"}, policy)
    assert out["by_score"]["betti_decay"] == ["b", "a"]  # still ranked and shown
    assert [r["model"] for r in out["aggregate"]] == ["a", "b"]
    assert out["policy"]["name"] == "leep-only" and out["policy"]["scores"] == ["leep"]


def test_job_policy_is_the_default_or_the_mean_rank_of_what_was_asked():
    from zoorank.policy import DEFAULT_RANKING
    from zoorank.rank import job_policy
    from zoorank.scores import list_scores

    assert job_policy(list(DEFAULT_RANKING.scores)) == DEFAULT_RANKING
    # any other set, the default's scores among them, is combined without fitted weights
    assert job_policy(list_scores()).weights is None and job_policy(list_scores()).method == "mean_rank"
    others = [s for s in list_scores() if s not in DEFAULT_RANKING.scores][:2]
    fallback = job_policy(others)
    assert fallback.method == "mean_rank" and fallback.scores == tuple(others)


def test_ties_share_the_mean_rank():
    out = rank_models({"a": {"s": 1.0}, "b": {"s": 1.0}, "c": {"s": 0.0}}, {"s": "higher"})
    assert {r["model"]: r["value"] for r in out["aggregate"]} == {"a": -1.5, "b": -1.5, "c": -3.0}


def test_bad_requests_are_refused_before_work():
    with pytest.raises(InvalidInputError, match="empty"):
        resolve_models([])
    with pytest.raises(UnknownNameError, match="unknown score"):
        resolve_scores(["nope"])
    with pytest.raises(InvalidInputError, match="unknown option"):
        RankOptions.from_dict({"sample_per_class": 3})
    with pytest.raises(InvalidInputError, match="input_size"):
        RankOptions.from_dict({"input_size": 4})
    with pytest.raises(InvalidInputError, match="no parameter"):
        RankOptions.from_dict({"score_params": {"logme": {"zzz": 1}}})


@pytest.mark.slow
def test_pretrained_beats_its_random_twin_by_linear_probe(tmp_path):
    """mobilenetv2_100 with ImageNet weights vs the same architecture at random init, on all
    1797 images of builtin:digits at 32 px: the pretrained probe is clearly more accurate
    (measured 0.89 vs 0.75; at 64 px with 50 per class the gap is only ~0.03)."""
    result = rank(
        "builtin:digits",
        ["mobilenetv2_100", "mobilenetv2_100@random"],
        ["linear_probe", "logme"],
        RankOptions(samples_per_class=0, input_size=32, tap_images_per_class=0),
        cache_dir=tmp_path,
    )
    acc = {r.model: r.scores["linear_probe"].value for r in result.results}
    assert acc["mobilenetv2_100"] > acc["mobilenetv2_100@random"] + 0.08, acc
    assert result.ranking["by_score"]["logme"][0] == "mobilenetv2_100"
    assert len(result.sample_ids) == 1797


def test_failed_model_does_not_take_the_ranking_down(tmp_path):
    (tmp_path / "w.safetensors").write_bytes(b"not a safetensors file")
    result = rank(
        "builtin:digits",
        ["mobilenetv2_100@random", f"resnet10t@file:{tmp_path / 'w.safetensors'}"],
        ["logme"],
        RankOptions(samples_per_class=10, input_size=32, tap_images_per_class=0),
        data_roots=[tmp_path],  # weight files, like datasets, come from under the data roots
    )
    by_model = {r.model: r for r in result.results}
    assert by_model["mobilenetv2_100@random"].error is None
    assert by_model[f"resnet10t@file:{tmp_path / 'w.safetensors'}"].error
    # the failed model is ranked last, with its reason, and takes no part in the combination
    rows = result.ranking["aggregate"]
    assert [row["model"] for row in rows] == [
        "mobilenetv2_100@random",
        f"resnet10t@file:{tmp_path / 'w.safetensors'}",
    ]
    assert rows[1]["rank"] == 2 and rows[1]["value"] is None and "safetensors" in rows[1]["failed"]
    assert rows[0]["p_top1"] == 1.0 and rows[1]["p_top1"] == 0.0


def test_linear_probe_row_space_projection_is_exact():
    """d > n: the probe fitted in the training rows' span predicts exactly as in full space."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from zoorank.scores.probe import _row_space

    rng = np.random.default_rng(0)
    x_train, x_test = rng.normal(size=(40, 300)), rng.normal(size=(25, 300))
    y = rng.integers(0, 3, 40)
    full = LogisticRegression(C=0.5, max_iter=5000, tol=1e-10).fit(x_train, y)
    p_train, p_test = _row_space(x_train, x_test)
    assert p_train.shape == (40, 40)
    small = LogisticRegression(C=0.5, max_iter=5000, tol=1e-10).fit(p_train, y)
    np.testing.assert_allclose(small.decision_function(p_test), full.decision_function(x_test), atol=1e-4)


def test_tap_input_size_values():
    from zoorank.rank import tap_input_size

    assert tap_input_size({}, 64) == 64  # scores without the parameter use the job's pass
    assert tap_input_size({"input_size": "job"}, 64) == 64
    assert tap_input_size({"input_size": "native"}, 64) is None
    assert tap_input_size({"input_size": "0"}, 64) is None
    assert tap_input_size({"input_size": 96}, None) == 96
    for bad in ("huge", "8", "2048"):
        with pytest.raises(InvalidInputError, match="input_size"):
            tap_input_size({"input_size": bad}, 64)
    with pytest.raises(InvalidInputError, match="input_size"):
        RankOptions.from_dict({"score_params": {"betti_slope": {"input_size": "big"}}})


@pytest.mark.slow
def test_betti_input_size_param_takes_taps_at_that_resolution(tmp_path):
    """``input_size=48`` on a Betti score: its value equals the score run by hand on taps
    extracted at 48 px from the same tap images; betti_decay's default takes them at the
    model's own 224 px; betti_decay_norm's default uses the job's 32 px pass."""
    import numpy as np

    from zoorank.features.extract import extract_features
    from zoorank.features.preprocess import architecture_preprocessing
    from zoorank.scores import ScoreInputs, get_score
    from zoorank.zoo import create_model, get_model_spec

    options = RankOptions(
        samples_per_class=4,
        min_samples_per_class=4,
        input_size=32,
        tap_images_per_class=2,
        score_params={"betti_slope": {"input_size": "48"}},
    )
    result = rank(
        "builtin:digits",
        ["mobilenetv2_100@random"],
        ["betti_slope", "betti_decay", "betti_decay_norm"],
        options,
        cache_dir=tmp_path,
    )
    record = result.results[0].scores
    assert record["betti_slope"].error is None and record["betti_slope"].params["input_size"] == "48"

    from zoorank.data import class_balanced_rows, load_dataset

    dataset = load_dataset("builtin:digits")
    rows = np.asarray(result.sample_ids)
    tap_rows = class_balanced_rows(dataset.labels[rows], 2)
    model = create_model(get_model_spec("mobilenetv2_100@random"))
    by_hand = {}
    for size in (48, 32, None):
        features = extract_features(
            model,
            dataset.read,
            rows[tap_rows],
            architecture_preprocessing("mobilenetv2_100", size),
            tap_rows=np.arange(tap_rows.size),
            device="cpu",
        )
        inputs = ScoreInputs(
            labels=dataset.labels[rows[tap_rows]], taps=features.taps, tap_rows=features.tap_rows
        )
        by_hand[size] = {
            n: get_score(n)(inputs).value for n in ("betti_slope", "betti_decay", "betti_decay_norm")
        }
    assert record["betti_slope"].value == pytest.approx(by_hand[48]["betti_slope"], abs=1e-12)
    assert record["betti_decay"].value == pytest.approx(by_hand[None]["betti_decay"], abs=1e-12)
    assert record["betti_decay_norm"].value == pytest.approx(by_hand[32]["betti_decay_norm"], abs=1e-12)
    assert by_hand[48]["betti_slope"] != pytest.approx(by_hand[32]["betti_slope"], abs=1e-6)


def test_a_model_whose_every_score_failed_is_last_with_the_reason():
    from zoorank.rank import ModelResult, ScoreRecord, summarise

    def record(score, value, error=None):
        return ScoreRecord(score, value, "higher", {}, error=error)

    results = [
        ModelResult("a", {"leep": record("leep", 1.0), "nce": record("nce", 0.5)}),
        ModelResult("b", {"leep": record("leep", 2.0), "nce": record("nce", None, "ValueError: boom")}),
        ModelResult("e", {"leep": record("leep", 0.0), "nce": record("nce", 0.1)}),
        ModelResult(
            "c", {"leep": record("leep", None, "ValueError: x"), "nce": record("nce", None, "ValueError: y")}
        ),
        ModelResult("d", {}, error="InvalidInputError: weight file missing"),
    ]
    ranking, _ = summarise(results, ["leep", "nce"])
    rows = {r["model"]: r for r in ranking["aggregate"]}
    # b failed on nce only: one model's failure is not a missing score for the pool, b takes
    # nce's worst place. Mean ranks: a (2 + 1) / 2 = 1.5, b (1 + 3) / 2 = 2, e (3 + 2) / 2 = 2.5
    assert [(m, rows[m]["rank"]) for m in "abe"] == [("a", 1), ("b", 2), ("e", 3)]
    assert rows["c"]["rank"] == rows["d"]["rank"] == 4
    assert rows["c"]["failed"].startswith("every score failed") and "ValueError" in rows["c"]["failed"]
    assert rows["d"]["failed"] == "InvalidInputError: weight file missing"
    assert rows["c"]["p_top1"] == 0.0 and rows["c"]["value"] is None
    assert set(ranking["used_scores"]) == {"leep", "nce"}
