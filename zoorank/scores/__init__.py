"""Transferability scores. Importing this package registers every score module in it.

Each module ``zoorank/scores/<family>.py`` calls :func:`register_score` at import time;
modules whose name starts with ``_`` and the registry's own modules are not score modules.
"""

import importlib
import pkgutil

from zoorank.scores.inputs import ScoreInputs, ScoreOutput
from zoorank.scores.registry import ScoreSpec, get_score, list_scores, register_score

_NOT_SCORE_MODULES = {"inputs", "registry"}

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_") and _module.name not in _NOT_SCORE_MODULES:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["ScoreInputs", "ScoreOutput", "ScoreSpec", "get_score", "list_scores", "register_score"]
