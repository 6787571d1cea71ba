"""Cubical persistence and Betti numbers of 3-D arrays (used by :mod:`zoorank.scores.betti`).

* :mod:`zoorank.topology.cubical` -- reference path: sublevel V-construction persistence with
  gudhi, Betti numbers and curves counted from the intervals under either threshold rule.
* :mod:`zoorank.topology.fast` -- fast path: Betti numbers at one threshold from connected
  components and the Euler characteristic, no persistence; exact under both rules.
* :mod:`zoorank.topology.batch` -- many volumes at many thresholds, in parallel threads.
"""

from zoorank.topology.cubical import (
    RULES,
    Rule,
    as_volume,
    betti_curve_from_intervals,
    betti_from_intervals,
    persistence_intervals,
)
from zoorank.topology.fast import (
    betti_curve,
    betti_numbers,
    euler_characteristic,
    mask_betti,
    sublevel_betti,
)

__all__ = [
    "RULES",
    "Rule",
    "as_volume",
    "betti_curve",
    "betti_curve_from_intervals",
    "betti_from_intervals",
    "betti_numbers",
    "euler_characteristic",
    "mask_betti",
    "persistence_intervals",
    "sublevel_betti",
]
