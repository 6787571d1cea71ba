"""Does the fast path give the Betti numbers of CubicalRipser and gudhi on many random cases?

Run: ``python benchmarks/betti/agreement.py [--cases 1500]`` (8 s; 20000 cases: under 2 min). Prints the
number of (volume, η, rule) comparisons and of mismatches, and exits 1 on any mismatch.

Cases: smoothed random volumes of 2-13 voxels per side; every other one quantised to a few
levels (many ties), every fifth one clipped at 0 like a ReLU map; thresholds 0, a random value
and a voxel value (a tie); both rules (the authors' ``b ≤ η ≤ d`` and ``b ≤ η < d``). Per case
also a stack of 3 volumes against the sum of their Betti numbers at a tie.
"""

from __future__ import annotations

import argparse
import sys

import cripser
import numpy as np
from scipy import ndimage

from zoorank.topology import betti_from_intervals, betti_numbers, persistence_intervals
from zoorank.topology.batch import stacked_betti_sum


def cripser_intervals(volume: np.ndarray) -> list[np.ndarray]:
    table = cripser.computePH(volume.astype(np.float64), maxdim=2)
    return [table[table[:, 0] == k][:, 1:3] for k in range(3)]


def smooth(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    return (field / field.std()).astype(np.float32)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1500)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    compared = mismatches = 0
    for case in range(args.cases):
        shape = tuple(int(s) for s in rng.integers(2, 14, size=3))
        volume = smooth(rng, shape, rng.uniform(0.3, 1.5))
        if case % 2:
            volume = np.round(volume * rng.integers(1, 4)).astype(np.float32)
        if case % 5 == 0:
            volume = np.maximum(volume, 0)
        references = [cripser_intervals(volume), persistence_intervals(volume)]
        for eta in (0.0, float(rng.normal()), float(volume.flat[rng.integers(volume.size)])):
            for rule in ("closed", "half_open"):
                fast = betti_numbers(volume, eta, rule=rule).tolist()
                compared += 1
                if any(fast != betti_from_intervals(ref, eta, rule=rule).tolist() for ref in references):
                    mismatches += 1
                    print("mismatch:", case, shape, eta, rule, flush=True)
        stack = np.stack([smooth(rng, shape, 1.0) for _ in range(3)])
        eta = float(stack.flat[5])
        compared += 1
        summed = np.sum([betti_numbers(v, eta) for v in stack], axis=0).tolist()
        if stacked_betti_sum(stack, [eta]).tolist()[0] != summed:
            mismatches += 1
            print("stacked mismatch:", case, shape, flush=True)
    print(f"{compared} comparisons, {mismatches} mismatches")
    return int(mismatches > 0)


if __name__ == "__main__":
    sys.exit(main())
