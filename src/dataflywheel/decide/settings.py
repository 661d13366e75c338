"""Deployments' stored settings: loading a deployment, changing it, and applying changes made
by any process (every ``upkeep.SYNC_SECONDS``, by the background thread).

A change is read, merged and written in one transaction and bumps the row's ``revision``; each
process applies rows whose revision (or ``learner_seq``) differs from what it holds. New learner
settings start a fresh learner: the owner of learning records in ``learner_seq`` the sequence it
starts from, and the other processes start theirs from the same point, then replay the log.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from dataflywheel.decide.apprentice import Apprentice
from dataflywheel.decide.learner import LearnerConfig, create_learner
from dataflywheel.decide.learning import Learning
from dataflywheel.decide.pending import Deployment
from dataflywheel.decide.requests import ServiceConfig
from dataflywheel.decide.tables import deployments
from dataflywheel.errors import NotFoundError
from dataflywheel.store.store import dialect_insert

if TYPE_CHECKING:
    from dataflywheel.decide.service import DecisionService

D = deployments.c


class Settings:
    """The stored settings of one :class:`DecisionService`'s deployments."""

    def __init__(self, service: DecisionService) -> None:
        self.service = service
        self.store = service.store
        self.learning: Learning = service.learning

    def load(self, name: str, *, create: bool) -> Deployment:
        """Read a deployment's settings and its learner (saved, then replayed from the log)."""
        with self.store.read() as conn:
            row = conn.execute(select(deployments).where(D.name == name)).first()
        if row is None and not create:
            raise NotFoundError(f"unknown deployment {name!r}", field="deployment")
        config = LearnerConfig.from_dict(row.learner if row else {})
        service = ServiceConfig.from_dict(row.service if row else {})
        start: int | None = 0
        if row is not None and row.learner_seq is None and row.revision:
            start = None  # a new learner the owner has not placed in the sequence yet
        elif row is not None and row.learner_seq is not None:
            start = int(row.learner_seq)
        learner = create_learner(config)
        dep = Deployment(name, learner, service, Apprentice(learner))
        self.learning.load(dep, config, start)
        if row is None:
            now = time.time()
            with self.store.write() as conn:
                statement = dialect_insert(conn, deployments).values(
                    name=name,
                    learner=config.to_dict(),
                    service=asdict(service),
                    created_at=now,
                    updated_at=now,
                    revision=0,
                    learner_seq=0,
                )
                conn.execute(statement.on_conflict_do_nothing(index_elements=["name"]))
        else:
            dep.revision = int(row.revision)
        if self.learning.owner:
            with dep.lock:
                self.service.upkeep.take_over(dep)
        return dep

    def configure(
        self,
        dep: Deployment,
        service: Mapping[str, Any] | None,
        learner: Mapping[str, Any] | None,
    ) -> None:
        """Change the stored settings (read, merged and written in one transaction), then
        apply them here; other processes apply them at their next sync."""
        with dep.lock:
            with self.store.write() as conn:
                where = D.name == dep.name
                row = conn.execute(select(deployments).where(where).with_for_update()).one()
                values: dict[str, Any] = {"revision": D.revision + 1, "updated_at": time.time()}
                if service is not None:
                    merged = ServiceConfig.from_dict({**row.service, **service})
                    values["service"] = asdict(merged)
                if learner is not None:
                    config = LearnerConfig.from_dict(learner)
                    if config != LearnerConfig.from_dict(row.learner):
                        values["learner"] = config.to_dict()
                        values["learner_seq"] = dep.sequence if self.learning.owner else None
                conn.execute(update(deployments).where(where).values(values))
                row = conn.execute(select(deployments).where(where)).one()
            self._apply(dep, row)

    def sync(self) -> None:
        """Apply settings changed by any process since this one last looked."""
        names = [dep.name for dep in self.service.loaded()]
        if not names:
            return
        with self.store.read() as conn:
            rows = conn.execute(select(deployments).where(D.name.in_(names))).all()
        for row in rows:
            dep = self.service.deployment(row.name)
            if (row.revision, row.learner_seq) != (dep.revision, dep.learner_seq):
                with dep.lock:
                    self._apply(dep, row)

    def _apply(self, dep: Deployment, row: Any) -> None:
        dep.service = ServiceConfig.from_dict(row.service)
        config = LearnerConfig.from_dict(row.learner)
        if self.learning.owner:
            if config != dep.learner.config:
                Learning.reset(dep, create_learner(config), dep.sequence, dep.sequence)
                self.service.upkeep.flush()  # a save never runs ahead of the log
                self.learning.save(dep)
            if row.learner_seq != dep.learner_seq:
                with self.store.write() as conn:
                    conn.execute(
                        update(deployments)
                        .where(D.name == dep.name, D.revision == row.revision)
                        .values(learner_seq=dep.learner_seq)
                    )
        elif row.learner_seq is None:
            if config != dep.learner.config:
                Learning.reset(dep, create_learner(config), dep.sequence, None)
        elif config != dep.learner.config or row.learner_seq != dep.learner_seq:
            start = int(row.learner_seq)
            Learning.reset(dep, create_learner(config), start, start)
            while self.learning.replay(dep):
                pass
        dep.revision = int(row.revision)
