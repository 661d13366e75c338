"""Labels: answers to queued (or ad-hoc) cases, flowing back as strong-signal events.

A label becomes a ``label`` event (weight 4 × value, strong) through the ingestion path, so the
next snapshot learns from it; a correction (the item that should have been shown) adds a
positive label on that item and a preference pair for export. A label may also add its case to
a regression suite that candidates must pass before promotion. A request is validated whole
before anything is written, and event ids are derived from the case, so a retry stores nothing
twice.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select, update

from dataflywheel.errors import NotFoundError, ValidationError
from dataflywheel.ingest.service import Ingestor
from dataflywheel.label.queue import LabelQueue
from dataflywheel.label.tables import label_queue, regression_cases
from dataflywheel.store.store import Store, dialect_insert

_FIELDS = {"id", "task", "user_id", "item_id", "value", "correction", "suite"}
Q = label_queue.c


class Labels:
    """Stores labels, keeps regression suites and exports curated feedback."""

    def __init__(self, store: Store, ingestor: Ingestor, queue: LabelQueue) -> None:
        self.store = store
        self.ingestor = ingestor
        self.queue = queue

    def submit(
        self, labels: Sequence[Mapping[str, Any]], now: float | None = None
    ) -> dict[str, Any]:
        """Validate every label, then store them; returns counts and the events' outcome."""
        now = time.time() if now is None else now
        if not isinstance(labels, Sequence) or not labels:
            raise ValidationError("labels must be a non-empty list", field="labels")
        cases = self._resolve(labels)
        events: list[dict[str, Any]] = []
        for case in cases:
            key = f"{case['task']}:{case['user_id']}:{case['item_id']}"
            events.append(self._event(f"label:{key}", case, case["item_id"], case["value"], now))
            if case["correction"]:
                events.append(
                    self._event(f"label:{key}:correction", case, case["correction"], 1.0, now)
                )
        result = self.ingestor.ingest(events)
        if result.rejected:
            raise ValidationError(f"label event rejected: {result.rejected[0]}", field="labels")
        with self.store.write() as conn:
            for case in cases:
                label = {"value": case["value"], "correction": case["correction"]}
                if case["id"] is not None:
                    conn.execute(
                        update(label_queue)
                        .where(Q.id == case["id"])
                        .values(status="labelled", labelled_at=now, label=label)
                    )
                else:
                    key = f"{case['task']}|{case['user_id']}|{case['item_id']}"
                    row = dialect_insert(conn, label_queue).values(
                        dedup_key=key,
                        task=case["task"],
                        trigger_id="",
                        user_id=case["user_id"],
                        item_id=case["item_id"],
                        priority=0,
                        reason="labelled directly",
                        status="labelled",
                        created_at=now,
                        labelled_at=now,
                        label=label,
                    )
                    conn.execute(
                        row.on_conflict_do_update(
                            index_elements=["dedup_key"],
                            set_={"status": "labelled", "labelled_at": now, "label": label},
                        )
                    )
                if case["suite"]:
                    self._add_case(conn, case, now)
        return {"labelled": len(cases), "events": result.to_dict()}

    @staticmethod
    def _event(
        event_id: str, case: Mapping[str, Any], item: str, value: float, now: float
    ) -> dict[str, Any]:
        return {
            "event_id": event_id,
            "user_id": case["user_id"],
            "item_id": item,
            "type": "label",
            "value": value,
            "timestamp": now,
            "context": {"task": case["task"]},
        }

    @staticmethod
    def _add_case(conn: Any, case: Mapping[str, Any], now: float) -> None:
        cases = [(case["item_id"], case["value"] > 0)]
        if case["correction"]:
            cases.append((case["correction"], True))
        for item, relevant in cases:
            row = dialect_insert(conn, regression_cases).values(
                suite=case["suite"],
                user_id=case["user_id"],
                item_id=item,
                relevant=relevant,
                created_at=now,
            )
            conn.execute(
                row.on_conflict_do_update(
                    index_elements=["suite", "user_id", "item_id"], set_={"relevant": relevant}
                )
            )

    def _resolve(self, labels: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Every label as a complete case, or the first problem as an error naming it."""
        tasks = self.queue.tasks()
        ids = [x["id"] for x in labels if isinstance(x, Mapping) and x.get("id") is not None]
        queued = self.queue.cases([int(i) for i in ids if isinstance(i, int)])
        out = []
        for index, label in enumerate(labels):
            where = f"labels.{index}"
            if not isinstance(label, Mapping) or set(label) - _FIELDS:
                raise ValidationError(f"a label has fields {sorted(_FIELDS)}", field=where)
            case: dict[str, Any] = {"id": None, **{f: label.get(f) for f in _FIELDS - {"id"}}}
            if label.get("id") is not None:
                found = queued.get(label["id"]) if isinstance(label["id"], int) else None
                if found is None:
                    raise NotFoundError(f"no queued case {label['id']!r}", field=f"{where}.id")
                case.update({k: found[k] for k in ("id", "task", "user_id", "item_id")})
            if case["task"] not in tasks:
                raise NotFoundError(
                    f"unknown task {case['task']!r}; known: {sorted(tasks)}", field=f"{where}.task"
                )
            for field in ("user_id", "item_id"):
                if not isinstance(case[field], str) or not case[field]:
                    raise ValidationError(f"{field} is required", field=f"{where}.{field}")
            value = case["value"]
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (math.isfinite(value) and -1.0 <= value <= 1.0)
            ):
                raise ValidationError("value must be a number in [-1, 1]", field=f"{where}.value")
            for field in ("correction", "suite"):
                if case[field] is not None and (
                    not isinstance(case[field], str) or not case[field]
                ):
                    raise ValidationError(f"{field} must be a string", field=f"{where}.{field}")
            out.append(case)
        return out

    # Regression suites ----------------------------------------------------------------------

    def suites(self) -> dict[str, list[dict[str, Any]]]:
        """Every regression suite's cases: user, item and whether the item is relevant."""
        c = regression_cases.c
        with self.store.read() as conn:
            rows = conn.execute(select(regression_cases).order_by(c.suite, c.id)).all()
        out: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            out.setdefault(r.suite, []).append(
                {"user_id": r.user_id, "item_id": r.item_id, "relevant": bool(r.relevant)}
            )
        return out

    # Export ---------------------------------------------------------------------------------

    def curated(self) -> list[dict[str, Any]]:
        """Labelled cases, plus a preference pair for every correction."""
        with self.store.read() as conn:
            rows = conn.execute(
                select(label_queue).where(Q.status == "labelled").order_by(Q.labelled_at, Q.id)
            ).all()
        out: list[dict[str, Any]] = []
        for r in rows:
            label = r.label or {}
            out.append(
                {
                    "kind": "label",
                    "task": r.task,
                    "user_id": r.user_id,
                    "item_id": r.item_id,
                    "value": label.get("value"),
                    "chosen": None,
                    "rejected": None,
                    "recommendation_id": r.recommendation_id,
                    "reason": r.reason,
                    "labelled_at": r.labelled_at,
                }
            )
            if label.get("correction"):
                out.append(
                    {
                        **out[-1],
                        "kind": "preference",
                        "item_id": None,
                        "value": None,
                        "chosen": label["correction"],
                        "rejected": r.item_id,
                    }
                )
        return out

    def export(self, path: Path, fmt: str | None = None) -> int:
        """Write :meth:`curated` to ``path`` as JSON Lines or Parquet; returns the row count."""
        fmt = fmt or ("parquet" if path.suffix == ".parquet" else "jsonl")
        rows = self.curated()
        if fmt == "jsonl":
            path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
        elif fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows), path)
        else:
            raise ValidationError("format must be jsonl or parquet", field="format")
        return len(rows)
