"""``python -m benchmarks.ranking [--quick] [--fresh-zoo] [...]`` (see ``--help``)."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

from zoorank.settings import enter_offline_by_default


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v)


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ranking", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes, results in cache/quick/")
    parser.add_argument("--fresh-zoo", action="store_true", help="retrain the controlled zoo")
    parser.add_argument("--no-powergrad", action="store_true", help="skip the PowerGrad study")
    parser.add_argument(
        "--reanalyse",
        action="store_true",
        help="recompute the statistics of the stored results (no training)",
    )
    parser.add_argument(
        "--add-scores",
        type=_names,
        help="score the stored run's models with these scores too (cached features, no training)",
    )
    parser.add_argument("--targets", type=_names, help="dataset refs, comma-separated")
    parser.add_argument("--seeds", type=_ints, help="fine-tuning seeds, e.g. 0,1,2")
    parser.add_argument("--scores", type=_names, help="score names (default: all registered)")
    parser.add_argument("--architectures", type=_names, help="controlled-zoo architectures")
    parser.add_argument("--snapshot-epochs", type=_floats, help="zoo snapshots, e.g. 0.25,1,5")
    parser.add_argument("--train-per-class", type=int, help="fine-tuning train images/class")
    parser.add_argument("--epochs", type=int, help="fine-tuning epochs (max; early stopping)")
    parser.add_argument("--input-size", type=int, help="pixels, scores and fine-tuning")
    parser.add_argument("--alphas", type=_floats, help="PowerGrad α values, e.g. 1,0.5,0.25")
    parser.add_argument("--resamples", type=int, help="bootstrap resamples")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--cache", type=Path, help="cache folder (default benchmarks/cache)")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    enter_offline_by_default()
    from .config import BenchConfig, quick_config
    from .run import run

    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    config = BenchConfig()
    if args.reanalyse:
        from .run import reanalyse

        reanalyse(args.out or config.out_dir, resamples=args.resamples or config.resamples)
        return 0
    if args.add_scores:
        from .run import add_scores

        add_scores(config, list(args.add_scores))
        return 0
    if args.cache:
        config = replace(config, cache_dir=args.cache)
    if args.out:
        config = replace(config, out_dir=args.out)
    if args.quick:
        config = quick_config(config)
    zoo, train = config.zoo, config.train
    if args.architectures:
        zoo = replace(zoo, architectures=args.architectures)
    if args.snapshot_epochs:
        zoo = replace(zoo, snapshot_epochs=args.snapshot_epochs)
    for name in ("train_per_class", "epochs", "input_size"):
        if getattr(args, name) is not None:
            train = replace(train, **{name: getattr(args, name)})
    if args.input_size is not None:
        zoo = replace(zoo, input_size=args.input_size)
    overrides = {
        "targets": args.targets,
        "seeds": args.seeds,
        "scores": args.scores,
        "powergrad_alphas": args.alphas,
        "resamples": args.resamples,
        "threads": args.threads,
    }
    config = replace(config, zoo=zoo, train=train, **{k: v for k, v in overrides.items() if v is not None})
    config.train.validate()
    run(config, fresh_zoo=args.fresh_zoo, powergrad=not args.no_powergrad)
    return 0


if __name__ == "__main__":
    sys.exit(main())
