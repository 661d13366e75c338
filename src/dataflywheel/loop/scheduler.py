"""The background loop: retrain when enough new data arrived or a period passed, move the
candidate through its gates (see :mod:`dataflywheel.loop.gates`), promote or keep — and say why.

Exactly one loop runs per store: a lease (:mod:`dataflywheel.store.lease`) names the holder, so
API replicas can all start a loop thread and only one of them works at a time. The holder renews
the lease while a step runs (training included) and stops acting as soon as it has lost it.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import orjson

from dataflywheel.config import Settings
from dataflywheel.errors import ConflictError, FlywheelError, TrainingError
from dataflywheel.ingest.service import Ingestor
from dataflywheel.label.labels import Labels
from dataflywheel.label.queue import LabelQueue
from dataflywheel.learn.registry import Registry
from dataflywheel.learn.trainer import Trainer
from dataflywheel.learn.value.cache import cache_path, load
from dataflywheel.loop.context_job import last_check, newest_impression_ts
from dataflywheel.loop.gates import Rollout
from dataflywheel.store.lease import Lease, Renewal
from dataflywheel.store.store import Store

log = logging.getLogger(__name__)
LEASE = "loop"
CONTEXT_TIMEOUT = 1_800.0


class Loop:
    """One step at a time: :meth:`run_once` is what the server's thread calls periodically."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        trainer: Trainer,
        settings: Settings,
        *,
        isolated: bool = False,
    ) -> None:
        self.isolated = isolated
        self.child: subprocess.Popen[str] | None = None
        self.store = store
        self.registry = registry
        self.trainer = trainer
        self.settings = settings
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{id(self)}"
        self.lease = Lease(store, LEASE, self.holder)
        self._renewal: Renewal | None = None
        self._context_failed_at = -float("inf")
        labels = Labels(store, Ingestor(store), LabelQueue(store))
        self.rollout = Rollout(store, registry, settings, labels)
        self.rollout.fence = self.fence

    def due(self, now: float) -> tuple[bool, str]:
        """Whether to retrain: new events since the champion's snapshot, or time since it."""
        champion = self.registry.champion()
        latest = self.store.latest_event_id()
        if champion is None:
            return latest > 0, "no model yet"
        new_events = latest - (self.store.snapshot_watermark(champion["snapshot_id"]) or 0)
        if new_events >= self.settings.retrain_min_new_events:
            return True, f"{new_events} new events since {champion['version']}"
        age = now - champion["created_at"]
        if new_events > 0 and age >= self.settings.retrain_interval_seconds:
            return True, f"{age / 3600:.1f} h since {champion['version']} was trained"
        return False, f"{new_events} new events, {age / 3600:.1f} h since the last model"

    def run_once(self, now: float | None = None) -> dict[str, Any]:
        """Queue hard cases for labelling, move the candidate in flight through its stage, or
        retrain if due and gate the new candidate."""
        now = time.time() if now is None else now
        from dataflywheel.store.retention import apply_retention

        apply_retention(self.store, self.settings.retention_days, now)  # before a retrain reads
        queued = self.rollout.queue.scan(now)
        step, watched = self.rollout.watch(now)
        if step is None:
            step = self.rollout.advance(now)
        if step is None:
            step = self._retrain(now)
        if watched is not None:
            step = {**step, "watch": watched}
        if step["action"] == "skipped":
            if self.value_due(now):
                step = {**step, "value": self.measure_value()}
            elif self.context_due(now):
                step = {**step, "context_rerank": self.refit_context(now)}
        return {**step, "queued": queued} if queued else step

    def value_due(self, now: float) -> bool:
        """A value-of-data measure is due in the server's loop (``isolated``; in-process loops,
        such as the simulator's, never spend their time on it) when none is cached, or when the
        cached one is older than ``value_interval_seconds`` and events arrived since."""
        interval = self.settings.value_interval_seconds
        if not self.isolated or interval <= 0 or self.registry.champion() is None:
            return False
        cached = load(cache_path(self.store, self.settings.artifacts_dir()))
        if cached is None:
            return True
        fresh = now - float(cached.get("computed_at", 0.0)) < interval
        return not fresh and cached["watermark"] != self.store.latest_event_id()

    def measure_value(self) -> dict[str, Any]:
        """Refresh the cached measure in a child process (it retrains many times: serving must
        not wait on it); a failure is reported in the step, never raised."""
        budget = self.settings.value_budget_seconds
        command = [sys.executable, "-m", "dataflywheel.learn.value.job", "--budget", str(budget)]
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                env=self.child_command(budget)[1],
                timeout=budget * 10 + 120,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {"error": "the value-of-data measure exceeded ten times its budget"}
        if done.returncode != 0:
            return {"error": done.stderr.strip()[-500:]}
        return dict(orjson.loads(done.stdout))

    def context_due(self, now: float) -> bool:
        """A refit and check of the contextual re-ranker is due in the server's loop when context
        fields are declared and a champion serves, and: none was made, the champion changed
        since (the check replays the champion's ranking), or the last is older than
        ``context_rerank_interval_seconds`` and lists were served since. Switched off by hand,
        it stays off until the next fit by hand; a failed refit waits out the interval."""
        interval = self.settings.context_rerank_interval_seconds
        if not self.isolated or interval <= 0 or not self.settings.context_fields:
            return False
        champion = self.registry.champion()
        if champion is None or now - self._context_failed_at < interval:
            return False
        last = last_check(self.store)
        if last is None:
            return True
        ts, detail = last
        if detail.get("verdict") == "off":
            return False
        if detail.get("champion") != champion["version"]:
            return True
        newest = newest_impression_ts(self.store)
        return now - ts >= interval and newest is not None and newest > ts

    def refit_context(self, now: float) -> dict[str, Any]:
        """Refit and check the re-ranker in a child process
        (:mod:`dataflywheel.loop.context_job`, which records the verdict) so serving never waits
        on it; a failure is reported in the step, never raised."""
        command = [sys.executable, "-m", "dataflywheel.loop.context_job", "--now", repr(now)]
        for name in self.settings.context_fields:
            command += ["--field", name]
        child = self.child = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.child_command(self.settings.train_budget_seconds)[1],
        )
        try:
            stdout, stderr = child.communicate(timeout=CONTEXT_TIMEOUT)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            stdout, stderr = "", f"the refit was stopped after {CONTEXT_TIMEOUT:.0f} s"
        finally:
            self.child = None
        if child.returncode != 0:
            self._context_failed_at = now
            reason = stderr.strip()[-500:] or f"the refit exited with {child.returncode}"
            log.warning("loop: context re-ranker refit failed: %s", reason)
            return {"error": reason}
        report = dict(orjson.loads(stdout))
        log.warning("loop: context re-ranker %s (%s)", report["verdict"], report["reason"])
        return report

    def run_leased(self, ttl: float) -> dict[str, Any] | None:
        """:meth:`run_once` under the loop lease, renewed while the step runs; None when
        another live holder has the lease."""
        if not self.lease.acquire(ttl):
            return None
        with self.lease.kept(ttl) as renewal:
            self._renewal = renewal
            try:
                return self.run_once()
            finally:
                self._renewal = None

    def release(self) -> None:
        """Give the lease up on a clean stop; a step still running then changes nothing more."""
        renewal = self._renewal
        if renewal is not None:
            renewal.stop()
        self.lease.release()

    def fence(self) -> None:
        """Raise unless this loop may still change models: under :meth:`run_leased` it must
        hold the lease (a step run directly, from the CLI or the Python API, always may)."""
        renewal = self._renewal
        if renewal is not None and (renewal.lost.is_set() or not self.lease.held()):
            raise ConflictError(
                "the loop lease passed to another holder; this step changes nothing more",
                field="lease",
            )

    def _retrain(self, now: float) -> dict[str, Any]:
        due, why = self.due(now)
        if not due:
            return {"action": "skipped", "version": None, "reason": why}
        champion = self.registry.champion()
        candidate = self.train(now)
        self.fence()
        if champion is None:
            return {"action": "promoted", "version": candidate["version"], "reason": "first model"}
        return self.gate(candidate, champion, now)

    def train(self, now: float) -> dict[str, Any]:
        """Train a candidate: in this process, or when ``isolated`` in a child process running
        learn's training job (:mod:`dataflywheel.learn.train_job`), so a crash or a long fit can
        never take serving down with it."""
        budget = self.settings.train_budget_seconds
        if not self.isolated:
            return self.trainer.train(self.settings.train_model, budget, now=now)
        command, env = self.child_command(budget)
        self.child = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        try:
            stdout, stderr = self.child.communicate(timeout=budget * 10 + 120)
        except subprocess.TimeoutExpired:
            self.child.kill()
            raise TrainingError("training exceeded ten times its budget and was stopped") from None
        finally:
            returncode, self.child = self.child.returncode, None
        if returncode != 0:
            raise TrainingError(f"training failed: {stderr.strip()[-500:]}")
        return dict(orjson.loads(stdout))

    def child_command(self, budget: float) -> tuple[list[str], dict[str, str]]:
        """The training child's argv and environment. The store and artifact URLs may hold
        passwords, so they travel in the environment: argv is readable by every local user
        (``ps``, /proc/PID/cmdline), a process's environment only by its owner."""
        command = [
            sys.executable,
            "-m",
            "dataflywheel.learn.train_job",
            "--model",
            self.settings.train_model,
            "--budget",
            str(budget),
        ]
        env = {**os.environ, "FLYWHEEL_DB": self.settings.db}
        if self.settings.artifacts:
            env["FLYWHEEL_ARTIFACTS"] = self.settings.artifacts
        return command, env

    def gate(
        self, candidate: dict[str, Any], champion: dict[str, Any], now: float
    ) -> dict[str, Any]:
        """Offline and regression gates; a candidate that passes enters shadow mode (or the
        stage after it, per the rollout settings)."""
        return self.rollout.admit(candidate, champion, now)


class LoopThread:
    """Runs :meth:`Loop.run_once` every ``loop_interval_seconds`` while holding the lease."""

    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flywheel-loop", daemon=True)
        self.last: dict[str, Any] | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current step; a training child process is terminated."""
        self._stop.set()
        child = self.loop.child
        if child is not None:
            child.terminate()
        self._thread.join(timeout=60)
        self.loop.release()

    def _run(self) -> None:
        settings = self.loop.settings
        interval = settings.loop_interval_seconds
        # Longer than the pause between steps, so the holder keeps the lease from step to step.
        ttl = max(3 * interval, settings.loop_lease_seconds)
        while not self._stop.wait(interval):
            try:
                step = self.loop.run_leased(ttl)
                if step is not None:
                    self.last = step
                    if step["action"] != "skipped":
                        log.warning(
                            "loop: %s %s (%s)", step["action"], step["version"], step["reason"]
                        )
            except FlywheelError as exc:
                self.last = {"action": "failed", "version": None, "reason": exc.message}
                log.warning("loop: %s", exc.message)
            except Exception:  # the loop must survive anything a training run throws
                log.exception("loop step failed; the champion keeps serving")
