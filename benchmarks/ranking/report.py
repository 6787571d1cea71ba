"""Markdown renderings of the benchmark JSON (no computation beyond formatting and sorting)."""

from __future__ import annotations

from typing import Any


def _f(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:+.{digits}f}" if digits == 3 else f"{value:.{digits}f}"


def _ci(interval: list[float] | tuple[float, float] | None) -> str:
    return "" if not interval else f" [{interval[0]:+.2f}, {interval[1]:+.2f}]"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def _sort_key(row: dict[str, Any]) -> tuple[int, float]:
    value = row.get("weighted_tau")
    return (0, -value) if value is not None else (1, 0.0)


def target_section(target: str, result: dict[str, Any], models: dict[str, dict[str, Any]]) -> str:
    lines = [f"## Target `{target}`", ""]
    split = result["split"]
    lines.append(
        f"Split: train {split['train']}, val {split['val']}, test "
        f"{split['test']} images; scores see the train split; ground truth = mean test accuracy "
        f"of {result['mode']} ({result['loss']}) over seeds {result['seeds']}. "
        f"Wall time {_minutes(result['seconds'])}."
    )
    lines += [
        "",
        "### Ground truth",
        "",
        "| model | kind | accuracy % (mean ± std) | per seed |",
        "|---|---|---|---|",
    ]
    truth = sorted(result["ground_truth"], key=lambda g: -(g["accuracy"] or -1))
    for g in truth:
        kind = models.get(g["model"], {}).get("kind", "")
        if g["accuracy"] is None:
            lines.append(f"| {g['model']} | {kind} | failed: {g['error']} | |")
            continue
        seeds = ", ".join(_pct(r["accuracy"]) for r in g["runs"])
        lines.append(
            f"| {g['model']} | {kind} | {_pct(g['accuracy'])} ± {_pct(g['accuracy_std'])} | {seeds} |"
        )
    sa = result.get("seed_agreement") or {}
    if sa:
        pairs = ", ".join(
            f"{p['seeds'][0]}–{p['seeds'][1]}: {_f(p['kendall_tau'])}{_ci(p.get('kendall_tau_ci'))}"
            for p in sa["pairs"]
        )
        lines += [
            "",
            f"Seed-to-seed Kendall τ of the ground-truth order: {pairs} (mean {_f(sa['mean_kendall_tau'])}).",
        ]
    lines += [
        "",
        "### Scores vs ground truth",
        "",
        "Sorted by weighted τ. Brackets: 95% bootstrap interval over models. Regret in "
        "accuracy points. `>twin`: pretrained models ranked above their random-init twin.",
        "",
        "| score | dir | n | weighted τ | Kendall τ | Pearson r | top-1 regret | ranked first | >twin |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    above = result.get("above_random", {})
    for row in sorted(result["agreement"], key=_sort_key):
        twin = above.get(row["score"], {})
        twin_text = f"{twin.get('above', 0)}/{twin.get('pairs', 0)}" if twin else "–"
        lines.append(
            f"| {row['score']} | {row['direction']} | {row['n_models']} | "
            f"{_f(row['weighted_tau'])}{_ci(row['weighted_tau_ci'])} | "
            f"{_f(row['kendall_tau'])}{_ci(row['kendall_tau_ci'])} | "
            f"{_f(row['pearson_r'])}{_ci(row['pearson_r_ci'])} | "
            f"{_pct(row['top1_regret'])} | {row['top1_model'] or '–'} | {twin_text} |"
        )
    for stat, best in (result.get("best") or {}).items():
        if best.get("best") is None:
            continue
        others = [s for s in best["tied"] if s != best["best"]]
        lines += [
            "",
            f"Best by {stat.replace('_', ' ')}: **{best['best']}**; not "
            f"distinguishable from it (paired bootstrap interval of the difference "
            f"contains 0): {', '.join(others) or 'none'}.",
        ]
        if best.get("excluded"):
            lines[-1] += (
                " Not competing (values on fewer than 80% of the models): "
                + ", ".join(best["excluded"])
                + "."
            )
    errors = result.get("score_errors") or {}
    if errors:
        failed: dict[str, list[str]] = {}
        for model, by_score in errors.items():
            for score in by_score:
                failed.setdefault(score, []).append(model)
        lines += [
            "",
            "Scores without a value on some models (left out of that score's "
            "statistics): " + "; ".join(f"{s}: {len(m)} model(s)" for s, m in sorted(failed.items())) + ".",
        ]
    return "\n".join(lines) + "\n"


def ranking_markdown(payload: dict[str, Any]) -> str:
    config = payload["config"]
    seconds = payload["seconds"]
    models = {m["label"]: m for m in payload["models"]}
    zoo = config["zoo"]
    lines = [
        "# Ranking quality: every score against fine-tuned ground truth",
        "",
        f"Regenerate: `{payload['command']}` (from the repository root; add `--fresh-zoo` to "
        "retrain the controlled zoo). "
        f"Wall time: zoo {_minutes(seconds['zoo'])}, scores + ground truth "
        f"{_minutes(seconds['ranking'])}"
        + (f", PowerGrad study {_minutes(seconds['powergrad'])}" if "powergrad" in seconds else "")
        + f"; total {_minutes(seconds['total'])} with {config['threads']} torch thread(s)."
        + (
            f" Statistics recomputed from the stored values by `{payload['reanalysed']['command']}`."
            if payload.get("reanalysed")
            else ""
        )
        + (
            f" Scores added later on the same split and cached features, no retraining: "
            f"{', '.join(payload['added_scores'])} (`python -m benchmarks.ranking --add-scores NAMES`)."
            if payload.get("added_scores")
            else ""
        ),
        "",
        f"Pool: {len(models)} models. Controlled zoo: {', '.join(zoo['architectures'])} trained "
        f"from random init on Fashion-MNIST train classes {zoo['source_classes']} "
        f"({zoo['source_per_class']} images per class, {zoo['input_size']} px), snapshots after "
        f"{zoo['snapshot_epochs']} epochs; the offline ImageNet models "
        f"{', '.join(config['offline_models'])}"
        + (" and their random-init twins" if config["random_twins"] else "")
        + f"; `{zoo['reinit_model']}` with blocks ≥ {zoo['reinit_from']} and the head "
        "re-initialised. Fine-tuning: "
        + ", ".join(f"{k} {v}" for k, v in config["train"].items() if k != "device")
        + f". Score parameters changed from their defaults: {config['score_params'] or 'none'}.",
        "",
        "| model | kind | source epochs | source accuracy % |",
        "|---|---|---|---|",
    ]
    for m in payload["models"]:
        lines.append(
            f"| {m['label']} | {m['kind']} | {m['source_epochs'] or '–'} | {_pct(m['source_accuracy'])} |"
        )
    lines.append("")
    for target, result in payload["targets"].items():
        lines.append(target_section(target, result, models))
    ov = payload["overall"]
    lines += [
        "## Overall",
        "",
        "| score | mean weighted τ | mean Kendall τ | tied for best (weighted τ) on every target |",
        "|---|---|---|---|",
    ]
    for name in ov["by_mean_weighted_tau"] + sorted(
        n for n in ov["scores"] if n not in ov["by_mean_weighted_tau"]
    ):
        row = ov["scores"][name]
        tied = "yes" if row["tied_best_weighted_tau_on_every_target"] else ""
        lines.append(f"| {name} | {_f(row['mean_weighted_tau'])} | {_f(row['mean_kendall_tau'])} | {tied} |")
    lines += [
        "",
        "Caveats: every model sees the targets at "
        f"{config['train']['input_size']} px (ImageNet models far below their native size); "
        f"fine-tuning uses {config['train']['train_per_class']} images per class and at most "
        f"{config['train']['epochs']} epochs, so random-init models barely train and every "
        "score that separates pretrained from random features gains Kendall τ from those "
        "pairs (the weighted τ and the top-1 regret look at the top of the order instead); "
        "a score defined only for some models (the ImageNet prior) is compared on those only "
        "and does not compete for best.",
        "",
        "Reading: a score is called better than another only where the paired bootstrap "
        "interval of the τ difference excludes 0; overlapping intervals mean the benchmark "
        "cannot separate them. Intervals are over models (which models are in the pool), not "
        "over training seeds; the seed-to-seed τ above bounds how sharp the ground truth is.",
        "",
    ]
    return "\n".join(lines)


def powergrad_markdown(pg: dict[str, Any]) -> str:
    alphas = [f"{a:g}" for a in pg["alphas"]]
    lines = [
        "# PowerGrad study: fine-tuning accuracy by α",
        "",
        "PowerGrad (Das et al., *Altering backward pass gradients improves convergence*): "
        "forward = cross-entropy, backward uses p' = p^α / Σ p^α in place of the softmax p. "
        "α = 1 is plain cross-entropy (those numbers are the ranking benchmark's ground truth). "
        f"Seeds {pg['seeds']}; same split, schedule and early stopping for every α. "
        f"Regenerate: `{pg['command']}`. Wall time of this study: {_minutes(pg['seconds'])}.",
        "",
    ]
    for target in pg["accuracy"]:
        summary = pg["summary"][target]
        lines += [
            f"## `{target}`",
            "",
            "| model | " + " | ".join(f"α = {a} (% mean ± std)" for a in alphas) + " |",
            "|---|" + "---|" * len(alphas),
        ]
        for model in pg["models"]:
            cells = []
            for a in alphas:
                stats = summary.get(a, {}).get("per_model", {}).get(model)
                cells.append("–" if stats is None else f"{_pct(stats['mean'])} ± {_pct(stats['std'])}")
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        lines.append(
            "| **mean over models** | "
            + " | ".join(_pct(summary.get(a, {}).get("mean_over_models")) for a in alphas)
            + " |"
        )
        lines.append(
            "| **difference vs α = 1 (points)** | "
            + " | ".join(_difference(summary.get(a, {})) for a in alphas)
            + " |"
        )
        lines.append("")
    lines += ["## Verdict", "", verdict(pg), ""]
    return "\n".join(lines)


def _difference(row: dict[str, Any]) -> str:
    if row.get("mean_difference_vs_ce") is None:
        return "–"
    p, w = row["sign_test_p"], row.get("wilcoxon_p")
    return (
        f"{100 * row['mean_difference_vs_ce']:+.2f} (helped {row['models_helped']}, hurt "
        f"{row['models_hurt']}; sign test p {'–' if p is None else f'{p:.2f}'}, Wilcoxon p "
        f"{'–' if w is None else f'{w:.2f}'})"
    )


def verdict(pg: dict[str, Any]) -> str:
    """A sentence per target and α, from the numbers: helps / hurts only with a consistent sign
    (sign test p < 0.05 over models); otherwise no detectable effect."""
    parts = []
    for target, rows in pg["summary"].items():
        for alpha, row in rows.items():
            if alpha == "1" or row["mean_difference_vs_ce"] is None:
                continue
            d, p = 100 * row["mean_difference_vs_ce"], row["sign_test_p"]
            significant = p is not None and p < 0.05
            word = ("helps" if d > 0 else "hurts") if significant else "no detectable effect"
            parts.append(
                f"`{target}`, α = {alpha}: {word} (mean {d:+.2f} points over "
                f"{len(row['paired_differences'])} models, sign-test p = "
                f"{'–' if p is None else f'{p:.2f}'})"
            )
    return "; ".join(parts) + "." if parts else "No PowerGrad runs."
