"""``flywheel context-rerank fit|off``: the contextual re-ranker (docs/context.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from dataflywheel.cli.common import DbOption, JsonOption, emit_json, open_wheel, out

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the ``context-rerank`` group to ``app``."""
    group = typer.Typer(help="Re-rank by the declared request context (setting context_fields).")
    app.add_typer(group, name="context-rerank")

    @group.command("fit")
    def fit(
        holdout: Annotated[
            float, typer.Option(help="Share of the newest context-carrying lists held out.")
        ] = 0.5,
        db: DbOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Fit the re-ranker on the older impression logs, check it off-policy on the newer
        ones against the champion's ranking, and switch it on only if it passes (audited)."""
        from dataflywheel.loop.context_gate import fit_and_check

        with open_wheel(db) as wheel:
            report = fit_and_check(wheel.store, wheel.registry, wheel.settings, holdout=holdout)
        if as_json:
            emit_json(report)
            return
        colour = "green" if report["active"] else "yellow"
        out.print(f"[{colour}]context re-ranker {report['verdict']}[/{colour}]: {report['reason']}")

    @group.command("off")
    def off(
        reason: Annotated[str, typer.Option(help="Recorded in the audit log.")] = "switched off",
        db: DbOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Stop re-ranking by context; serving processes follow within seconds (audited)."""
        from dataflywheel.loop.context_gate import switch_off

        with open_wheel(db) as wheel:
            report = switch_off(wheel.store, reason=reason)
        emit_json(report) if as_json else out.print("context re-ranking is off")
