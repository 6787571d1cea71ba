"""A confirmation's answer for a terminal: one table of every shortlisted model and the
sentences that say what to do (``zoorank confirm``, ``zoorank rank --confirm``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table


def _accuracy(value: float | None, interval: list[float] | None) -> str:
    if value is None:
        return "-"
    text = f"{100 * value:.1f} %"
    return text + (f" [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]" if interval else "")


def print_answer(
    answer: Mapping[str, Any], *, title: str = "confirmation", console: Console | None = None
) -> None:
    """The answer of :func:`zoorank.confirm.stage.answer`: the pick, the table, the verdict."""
    console = console or Console()
    table = Table(title=title)
    for column in ("#", "model", "ranked", "epochs", "val acc [95 % CI]", "why it stopped"):
        table.add_column(column, overflow="fold")
    for row in answer["models"]:
        table.add_row(
            str(row["confirmed_position"]),
            row["model"],
            f"#{row['ranking_position']}",
            str(row["epochs"]),
            _accuracy(row["val_accuracy"], row["val_interval"]),
            row["reason"],
        )
    console.print(table)
    if answer.get("pick"):
        console.print(
            f"[bold]Fine-tune {answer['pick']}[/bold]: validation accuracy"
            f" {_accuracy(answer['pick_val_accuracy'], answer['pick_interval'])} on"
            f" {answer['validation_rows']} rows."
        )
    for key in ("verdict", "order_change", "rows", "note", "top_k_note"):
        if answer.get(key):
            console.print(
                f"{answer[key][0].upper()}{answer[key][1:]}" + ("" if answer[key].endswith(".") else ".")
            )
    console.print(f"Spent {answer['cost']:,.0f} {answer['unit']} ({answer['seconds']:.1f} s of training).")


def confirm_options(
    *,
    top_k: int | None,
    budget: float | None,
    budget_unit: str | None,
    loss: str | None,
    settings: Mapping[str, str],
) -> dict[str, Any]:
    """The options given on a command line (None: the request's default), as a request body /
    :meth:`ConfirmRequest.from_dict` input."""
    values: dict[str, Any] = {"top_k": top_k, "budget": budget, "budget_unit": budget_unit, "loss": loss}
    out = {k: v for k, v in values.items() if v is not None}
    if settings:
        out["settings"] = dict(settings)
    return out
