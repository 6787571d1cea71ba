"""Every registered score has a known-answer test: a value computed independently of the
score's code (by hand, a closed formula on a constructed case, or a reference implementation
on the same arrays). ``KNOWN_ANSWERS`` names them; a score registered without an entry, or an
entry naming a test that does not exist, fails here. The battery (test_score_battery.py) checks
properties every score shares; this checks each score's value."""

from __future__ import annotations

import ast
import json
from functools import cache
from pathlib import Path

import pytest

from zoorank.scores import list_scores

UNIT = Path(__file__).resolve().parent
REFERENCE = "test_baselines_reference.py::test_matches_published_code"  # the authors' code's numbers

KNOWN_ANSWERS: dict[str, tuple[str, ...]] = {
    "activation_sparsity": (
        "test_activations.py::test_zero_fraction_and_pooling_by_hand",
        "test_activations.py::test_sparsity_summarises_only_post_activation_taps",
    ),
    "betti_auc": ("test_betti.py::test_betti_auc_known_answer",),
    "betti_decay": (
        "test_betti.py::test_theta_matches_hand_solved_ridge",
        "test_betti.py::test_omega_is_the_class_balanced_mean_of_known_betti_sums",
        "test_betti.py::test_curve_holds_the_authors_grid",
    ),
    "betti_decay_norm": ("test_betti.py::test_betti_decay_norm_known_answer",),
    "betti_slope": (
        "test_betti.py::test_betti_slope_closed_form_and_sign",
        "test_betti.py::test_betti_slope_and_slope_norm_known_answer",
    ),
    "betti_slope_norm": ("test_betti.py::test_betti_slope_and_slope_norm_known_answer",),
    "cluster_quality": ("test_activations.py::test_cluster_quality_known_answer_by_hand",),
    "constrained_margin": (
        "test_margins_constrained.py::test_equals_hyperplane_distance_when_the_normal_is_in_the_subspace",
        "test_margins_constrained.py::test_registered_score_on_a_linear_backbone_matches_the_probe_geometry",
    ),
    "fragmentation": (
        "test_fragmentation.py::test_path_changes_counted_by_hand",
        "test_fragmentation.py::test_linear_model_on_separable_data_never_fragments",
    ),
    "gbc": ("test_baselines.py::test_gbc_by_hand_in_one_dimension", REFERENCE),
    "hidden_fragmentation": ("test_fragmentation.py::test_linear_model_on_separable_data_never_fragments",),
    "hidden_margin": ("test_margins.py::test_two_gaussians_margin_is_a_over_total_std",),
    "hscore": ("test_baselines.py::test_h_score_two_class_closed_form", REFERENCE),
    "imagenet_top1": ("test_baselines.py::test_imagenet_prior_reads_meta_and_nothing_else",),
    "knn": (
        "test_baselines.py::test_knn_by_hand_with_a_tie",
        "test_baselines.py::test_knn_majority_vote_by_hand",
    ),
    # the score's core (decision trees over the ReLU codes) on a hand-set XOR network
    "layer_tree_fidelity": ("test_layer_trees.py::test_hand_set_xor_mlp_gives_the_known_trees",),
    "leep": ("test_baselines.py::test_leep_by_hand_on_four_samples", REFERENCE),
    "linear_probe": ("test_probe.py::test_matches_scikit_learn_cross_validation_on_the_same_folds",),
    "logme": ("test_logme.py::test_matches_brute_force_maximum_of_exact_evidence", REFERENCE),
    "nce": ("test_baselines.py::test_nce_by_hand", REFERENCE),
    "ncti": ("test_baselines.py::test_ncti_vc_term_by_hand_for_confident_predictions", REFERENCE),
    "nleep": ("test_baselines.py::test_nleep_of_one_blob_is_minus_the_label_entropy",),
    "sfda": (
        "test_baselines.py::test_sfda_first_pass_is_the_shrunk_fisher_classifier_written_out",
        REFERENCE,
    ),
    "shrinkage_hscore": (
        "test_baselines.py::test_shrinkage_h_score_against_sklearn_ledoit_wolf_written_out",
        REFERENCE,
    ),
    "translation_sensitivity": ("test_translation.py::test_pixel_average_is_invariant_to_circular_shifts",),
    "transrate": ("test_baselines.py::test_transrate_by_hand_without_class_recentring", REFERENCE),
}


@cache
def _test_functions(module: str) -> frozenset[str]:
    tree = ast.parse((UNIT / module).read_text())
    return frozenset(node.name for node in tree.body if isinstance(node, ast.FunctionDef))


@cache
def _reference_scores() -> frozenset[str]:
    cases = json.loads((UNIT.parent / "fixtures" / "reference_scores.json").read_text())["cases"]
    return frozenset(case["score"] for case in cases)


def test_every_registered_score_has_a_known_answer_test() -> None:
    missing = sorted(set(list_scores()) - set(KNOWN_ANSWERS))
    assert not missing, (
        f"registered without a known-answer test: {', '.join(missing)}; write one (a value computed "
        "independently of the score's code) and name it in KNOWN_ANSWERS"
    )
    assert not set(KNOWN_ANSWERS) - set(list_scores()), "KNOWN_ANSWERS names scores that are not registered"


@pytest.mark.parametrize("score", sorted(KNOWN_ANSWERS))
def test_the_named_known_answer_tests_exist(score: str) -> None:
    for name in KNOWN_ANSWERS[score]:
        module, function = name.split("::")
        assert function in _test_functions(module), f"{score}: {name} is not a test in tests/unit/"
        if name == REFERENCE:
            assert score in _reference_scores(), f"{score}: no case in tests/fixtures/reference_scores.json"
