"""``python -m benchmarks.heldout run|analyse`` -- the held-out ranking benchmark.

``run [--workers N] [--kinds scores,train,extra,trees,calib]`` builds the targets and the 25-model pool,
then works through every unit not yet cached (one compact file per kind,
``benchmarks/results/heldout/KIND.jsonl.gz``, committed: see :mod:`benchmarks.unitcache`;
features, model files and the units' bulk fields under the gitignored ``benchmarks/cache/heldout/``).
Interrupt and rerun at will.

``analyse`` chooses the default ranking on (held-out target x held-out population) folds from
what is cached and writes ``benchmarks/results/heldout.{json,md}``; ``policy --name N --version
V`` then releases that choice as ``zoorank/policies/N.json`` with the results' commit as its
provenance (a released name is never overwritten).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import sys
import time

from zoorank.settings import enter_offline_by_default


def main(argv: list[str] | None = None) -> int:
    enter_offline_by_default()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.heldout", description=__doc__)
    parser.add_argument("command", choices=("run", "analyse", "policy"))
    parser.add_argument("--name", help="name of the released default (policy; required, never reused)")
    parser.add_argument("--version", help="version of the released default (policy; required)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (1 torch thread each)")
    parser.add_argument("--kinds", default="scores,train,extra,trees,calib", help="unit kinds to work on")
    parser.add_argument(
        "--model-kinds",
        default="",
        help="work only on models of these kinds (e.g. intermediate,scratch-glyphs)",
    )
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (analyse)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(message)s", datefmt="%H:%M:%S")
    if args.command == "policy":
        from .policy_source import write

        if not args.name or not args.version:
            parser.error("policy needs --name and --version: a release is named explicitly")
        print(write(args.name, args.version))
        return 0
    if args.command == "analyse":
        from .analyse import analyse

        analyse(resamples=args.resamples)
        return 0

    from .pool import build_pool, pool_manifest
    from .targets import write_targets
    from .work import CACHE, RESULTS, clear_locks, worker

    began = time.perf_counter()
    write_targets()
    models = build_pool(CACHE)  # trains the controlled zoo once, before the workers start
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pool.json").write_text(json.dumps(pool_manifest(models), indent=1) + "\n")
    clear_locks()
    kinds = tuple(k for k in args.kinds.split(",") if k)
    model_kinds = tuple(k for k in args.model_kinds.split(",") if k)
    if args.workers <= 1:
        worker(kinds, model_kinds)
    else:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(args.workers) as pool:
            pool.starmap(worker, [(kinds, model_kinds)] * args.workers)
    logging.info("run finished in %.0f s", time.perf_counter() - began)
    return 0


if __name__ == "__main__":
    sys.exit(main())
