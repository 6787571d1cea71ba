"""Transferability scores. Importing this package registers every score module."""

from zoorank.scores.inputs import ScoreInputs, ScoreOutput
from zoorank.scores.registry import ScoreSpec, get_score, list_scores, register_score

# Score modules register themselves on import; keep this list in one place.
from zoorank.scores import logme as _logme  # noqa: E402,F401  isort: skip
from zoorank.scores import probe as _probe  # noqa: E402,F401  isort: skip

__all__ = ["ScoreInputs", "ScoreOutput", "ScoreSpec", "get_score", "list_scores", "register_score"]
