"""One ranking request: its fields, defaults and rules, in one place for the library
(:func:`zoorank.rank.rank`), the CLI (``zoorank rank``, ``zoorank submit``) and the API
(``POST /v1/jobs``, whose schema describes the same rules in ``zoorank_app.request_rules``).

The rules:

* ``dataset``: a reference (``builtin:``, ``folder:``, ``npz:``, ``upload:``); a path must lie
  under the data roots (:func:`zoorank.data.refs.resolve_under_roots`), checked where it is read.
* ``models``: names or ``ARCH@SOURCE``; None is the built-in zoo, an empty list an error; a
  ``file:`` weight lies under the data roots too (:func:`zoorank.rank.check_weight_files`).
* ``scores``: registered names; None is the default ranking's scores, an empty list an error.
* ``options``: :class:`zoorank.rank.RankOptions`, whose defaults are the CLI's; numbers follow
  :func:`zoorank.values.as_number` ("50" is 50), and ``input_size`` 0 or null is each model's
  own size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from zoorank.errors import InvalidInputError

if TYPE_CHECKING:
    from zoorank.rank import RankOptions

FIELDS = ("dataset", "models", "scores", "options")
# The defaults of RankOptions, here so that the CLI shows them without importing torch (this
# module stays light: what needs the models or scores is imported when it is called). They keep
# the 8-model offline zoo on builtin:digits well under a minute per model on a 2-core CPU.
DEFAULT_SAMPLES_PER_CLASS = 50
DEFAULT_INPUT_SIZE = 64
DEFAULT_SEED = 0


def _default_options() -> RankOptions:
    from zoorank.rank import RankOptions

    return RankOptions()


def check_model_list(models: Sequence[str] | None) -> None:
    """None is the built-in zoo; an empty list is refused (the one place of this rule: the
    request, the library's ``resolve_models`` and the service's ``job_models`` call it)."""
    if models is not None and len(models) == 0:
        raise InvalidInputError("the model list is empty; name at least one model", field="models")


def _names(value: Any, name: str) -> list[str] | None:
    """None, or a list of strings (a model or score list)."""
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise InvalidInputError(f"{name} must be a list of names, got {value!r}", field=name)
    return list(value)  # what each name means (a catalogue name, ARCH@SOURCE) is checked later


@dataclass
class RankRequest:
    """What to rank: ``dataset`` by ``scores`` over ``models`` with ``options`` (see the module)."""

    dataset: str
    models: list[str] | None = None
    scores: list[str] | None = None
    options: RankOptions = field(default_factory=_default_options)

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> RankRequest:
        """A request from JSON (the API, ``zoorank submit``) or the CLI's options, checked: every
        rule that needs no file, database or network (those come when it runs).

        Raises:
            InvalidInputError: naming the field.
        """
        unknown = sorted(set(body) - set(FIELDS))
        if unknown:
            raise InvalidInputError(
                f"unknown field(s) {', '.join(unknown)}; a ranking request has {', '.join(FIELDS)}",
                field=unknown[0],
            )
        from zoorank.rank import RankOptions

        dataset = body.get("dataset")
        if not isinstance(dataset, str):
            raise InvalidInputError(
                f"dataset must be a reference such as builtin:digits, got {dataset!r}", field="dataset"
            )
        request = cls(
            dataset=dataset,
            models=_names(body.get("models"), "models"),
            scores=_names(body.get("scores"), "scores"),
            options=RankOptions.from_dict(body.get("options")),
        )
        request.check()
        return request

    def check(self) -> list[str]:
        """Check the fields against the rules; return the score names the ranking computes.

        Raises:
            InvalidInputError: naming the field.
        """
        from zoorank.data.refs import parse_dataset_ref
        from zoorank.rank import resolve_scores
        from zoorank.zoo.specs import parse_model_ref

        parse_dataset_ref(self.dataset)
        check_model_list(self.models)
        for model in self.models or ():
            if "@" in model:  # a name is the catalogue's (built-in or registered) to resolve
                parse_model_ref(model)
        self.options.validate()
        return resolve_scores(self.scores)

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of ``POST /v1/jobs`` (None fields left out: the server's defaults)."""
        body: dict[str, Any] = {"dataset": self.dataset, "options": self.options.to_dict()}
        if self.models is not None:
            body["models"] = list(self.models)
        if self.scores is not None:
            body["scores"] = list(self.scores)
        return body
