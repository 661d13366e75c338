"""The contextual-bandit learner interface, its configuration and the factory.

Every learner ranks a request into a probability per action, draws the served action from
exactly those probabilities (so logged propensities are exact), keeps a minimum probability per
action so off-policy evaluation stays possible, and learns from ``(chosen, propensity, reward)``.
Models save to a directory without pickle: ``learner.json`` plus ``.npz`` arrays or a VW model.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from itertools import accumulate
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from dataflywheel.errors import ModelError, ValidationError

from .features import check_action_count

EXPLORATIONS = {
    "linear-ts": ("thompson", "epsilon", "softmax"),
    "linear-ucb": ("ucb", "epsilon", "softmax"),
    "vw": ("epsilon", "squarecb", "bag", "cover", "softmax"),
}
"""Exploration settings per algorithm; the first is the default."""
FORMAT_VERSION = 1
META_FILE = "learner.json"

Seed = np.random.Generator | int | None


@dataclass(frozen=True)
class LearnerConfig:
    """Validated settings of a learner; ``exploration=None`` picks the algorithm's own."""

    algorithm: str = "linear-ts"
    exploration: str | None = None
    epsilon: float = 0.2
    min_probability: float = 0.002
    seed: int = 0
    bits: int = 18
    id_feature: bool = True
    covariance: str = "diagonal"
    prior_variance: float = 1.0
    noise_variance: float = 1.0
    alpha: float = 0.25
    ts_scale: float = 0.25
    softmax_lambda: float = 10.0
    bag: int = 5
    cover: int = 3
    gamma_scale: float = 10.0
    cb_type: str = "mtr"
    interactions: str = "::"

    def __post_init__(self) -> None:
        if self.algorithm not in EXPLORATIONS:
            raise ValidationError(
                f"unknown algorithm {self.algorithm!r}; expected one of {', '.join(EXPLORATIONS)}",
                field="algorithm",
            )
        allowed = EXPLORATIONS[self.algorithm]
        if self.exploration is None:
            object.__setattr__(self, "exploration", allowed[0])
        elif self.exploration not in allowed:
            raise ValidationError(
                f"exploration {self.exploration!r} does not fit algorithm {self.algorithm!r}",
                field="exploration",
            )
        _check(0.0 <= self.epsilon <= 1.0, "epsilon", "must be in [0, 1]")
        _check(0.0 <= self.min_probability <= 1.0 / 50, "min_probability", "must be in [0, 0.02]")
        _check(1 <= self.bits <= 28, "bits", "must be in 1..28")
        _check(self.covariance in ("diagonal", "full"), "covariance", "is diagonal or full")
        _check(self.covariance == "diagonal" or self.bits <= 12, "bits", "must be ≤ 12 for full")
        for name in ("prior_variance", "noise_variance", "softmax_lambda", "gamma_scale"):
            _check(getattr(self, name) > 0, name, "must be positive")
        for name in ("alpha", "ts_scale"):
            _check(getattr(self, name) >= 0, name, "must be ≥ 0")
        _check(self.bag >= 1 and self.cover >= 1, "bag", "bag and cover must be ≥ 1")
        _check(self.cb_type in ("mtr", "ips", "dr", "dm"), "cb_type", "is mtr, ips, dr or dm")
        _check(
            all(c.isalnum() or c == ":" for c in self.interactions) and len(self.interactions) == 2,
            "interactions",
            "must be two namespace letters or ':'",
        )

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> LearnerConfig:
        """Build from a JSON-like mapping, rejecting unknown keys and wrong types."""
        if not isinstance(config, Mapping):
            raise ValidationError("learner config must be an object", field="config")
        known = {f.name: f for f in fields(cls)}
        for key, value in config.items():
            if key not in known:
                raise ValidationError(f"unknown learner setting {key!r}", field=key)
            _check_type(key, value, str(known[key].type))
        return cls(**dict(config))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ValidationError(f"{name} {message}", field=name)


def _check_type(key: str, value: Any, annotation: str) -> None:
    if annotation.startswith("str"):
        ok = isinstance(value, str) or (value is None and "None" in annotation)
    elif annotation == "bool":
        ok = isinstance(value, bool)
    elif annotation == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok:
        raise ValidationError(f"{key} must be of type {annotation}", field=key)


@dataclass(frozen=True, slots=True)
class Encoding:
    """A learner's encoding of a ranked request for learning the action ``index`` of it later,
    so that the reward does not parse and hash the request a second time."""

    learner: Learner
    index: int
    payload: Any


@dataclass(frozen=True)
class Ranking:
    """The answer to a rank call.

    ``probabilities`` follow the order of the request's actions and are the exact distribution
    the served action ``chosen_index`` was drawn from; ``action_ids`` is the ranking (served action
    first, then by probability); ``greedy_index`` is the learner's own best guess without
    exploration (what apprentice mode compares with the baseline); ``encoding``, when set, is
    what :meth:`Learner.learn` accepts to learn the served action without re-encoding.
    """

    action_ids: tuple[str, ...]
    probabilities: tuple[float, ...]
    chosen_index: int
    greedy_index: int
    encoding: Encoding | None = field(default=None, compare=False, repr=False)

    @property
    def chosen_probability(self) -> float:
        return self.probabilities[self.chosen_index]

    @property
    def chosen_id(self) -> str:
        return self.action_ids[0]


@dataclass
class LearnerState:
    """Counters a learner keeps across its life (saved with the model)."""

    ranks: int = 0
    learns: int = 0
    reward_sum: float = 0.0

    @property
    def mean_reward(self) -> float:
        return self.reward_sum / self.learns if self.learns else 0.0


class Learner(ABC):
    """A contextual bandit over Personalizer-style requests."""

    kind: ClassVar[str]

    def __init__(self, config: LearnerConfig) -> None:
        self.config = config
        self.state = LearnerState()
        self._rng = np.random.default_rng(config.seed)

    def rank(self, context: Any, actions: Sequence[Any], *, rng: Seed = None) -> Ranking:
        """Score the actions, draw one from the returned probabilities, and rank them."""
        ids, probs, scores, request = self._policy(context, actions)
        self.state.ranks += 1
        greedy = int(np.argmax(scores))
        return make_ranking(
            ids,
            probs,
            greedy,
            self._generator(rng),
            self._floor(len(ids)),
            lambda chosen: Encoding(self, chosen, self._encode(request, chosen)),
        )

    def best(self, context: Any, actions: Sequence[Any]) -> int | None:
        """The learner's own top action without exploration, or None when it has no preference."""
        _, _, scores, _ = self._policy(context, actions)
        greedy = int(np.argmax(scores))
        if len(scores) > 1 and np.delete(scores, greedy).max() >= scores[greedy] - 1e-12:
            return None
        return greedy

    def learn(
        self,
        context: Any,
        actions: Sequence[Any],
        chosen_index: int,
        probability: float,
        reward: float,
        *,
        encoding: Encoding | None = None,
    ) -> None:
        """Learn the ``reward`` of serving ``actions[chosen_index]`` (logged ``probability``).

        ``encoding`` (from the :class:`Ranking` of this very request) skips re-encoding it; one
        made by another learner or for another action is ignored.
        """
        n = check_action_count(actions)
        if not isinstance(chosen_index, int) or not 0 <= chosen_index < n:
            raise ValidationError(f"chosen_index must be in 0..{n - 1}", field="chosen_index")
        if not 0.0 < probability <= 1.0:
            raise ValidationError("probability must be in (0, 1]", field="probability")
        if not math.isfinite(reward):
            raise ValidationError("reward must be a finite number", field="reward")
        payload = None
        if encoding is not None and encoding.learner is self and encoding.index == chosen_index:
            payload = encoding.payload
        self._learn(context, actions, chosen_index, float(probability), float(reward), payload)
        self.state.learns += 1
        self.state.reward_sum += reward

    def save(self, directory: str | Path) -> None:
        """Write the model into ``directory`` (created if needed) without pickle."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self._save_model(path)
        meta = {
            "format": FORMAT_VERSION,
            "kind": self.kind,
            "config": self.config.to_dict(),
            "state": asdict(self.state),
            "rng": self._rng.bit_generator.state,
        }
        (path / META_FILE).write_text(json.dumps(meta, indent=1))

    def _generator(self, rng: Seed) -> np.random.Generator:
        if rng is None:
            return self._rng
        if isinstance(rng, np.random.Generator):
            return rng
        return np.random.default_rng(rng)

    def _floor(self, n_actions: int) -> float:
        """Share of probability mixed uniformly over the actions (the minimum-probability floor)."""
        eps = n_actions * self.config.min_probability
        if self.config.exploration == "epsilon":
            eps = max(eps, self.config.epsilon)
        return min(eps, 1.0)

    @abstractmethod
    def _policy(
        self, context: Any, actions: Sequence[Any]
    ) -> tuple[list[str], npt.NDArray[np.float64], npt.NDArray[np.float64], Any]:
        """Action ids, the exploration distribution before the floor, greedy scores, and the
        encoded request (passed to :meth:`_encode`)."""

    @abstractmethod
    def _encode(self, request: Any, index: int) -> Any:
        """What :meth:`_learn` needs of the encoded ``request`` to learn action ``index``."""

    @abstractmethod
    def _learn(
        self,
        context: Any,
        actions: Sequence[Any],
        chosen: int,
        probability: float,
        reward: float,
        payload: Any,
    ) -> None:
        """Learn one reward; ``payload`` is :meth:`_encode`'s result or None (encode anew)."""

    @abstractmethod
    def _save_model(self, path: Path) -> None: ...

    @abstractmethod
    def _load_model(self, path: Path) -> None: ...


def make_ranking(
    ids: list[str],
    probs: npt.NDArray[np.float64],
    greedy: int,
    rng: np.random.Generator,
    floor: float,
    encode: Callable[[int], Encoding] | None = None,
) -> Ranking:
    """Mix ``floor`` uniformly into ``probs``, draw the served action, and order the ranking
    (with ``encode(served index)`` as its encoding)."""
    p = ((1.0 - floor) / probs.sum() * probs + floor / len(ids)).tolist()
    cdf = list(accumulate(p))
    chosen = min(bisect_right(cdf, rng.random() * cdf[-1]), len(ids) - 1)
    order = sorted(range(len(ids)), key=p.__getitem__, reverse=True)
    order.remove(chosen)
    encoding = encode(chosen) if encode is not None else None
    return Ranking((ids[chosen], *[ids[i] for i in order]), tuple(p), chosen, greedy, encoding)


def create_learner(config: Mapping[str, Any] | LearnerConfig | None = None) -> Learner:
    """Build a learner from settings such as ``{"algorithm": "vw", "exploration": "squarecb"}``."""
    cfg = config if isinstance(config, LearnerConfig) else LearnerConfig.from_dict(config or {})
    if cfg.algorithm == "vw":
        from .vw import VWLearner

        return VWLearner(cfg)
    from .linear import LinearLearner

    return LinearLearner(cfg)


def load_learner(directory: str | Path) -> Learner:
    """Load a learner written by :meth:`Learner.save`."""
    path = Path(directory)
    try:
        meta = json.loads((path / META_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read learner from {path}: {exc}") from exc
    if meta.get("format") != FORMAT_VERSION:
        raise ModelError(f"unsupported learner format {meta.get('format')!r} in {path}")
    learner = create_learner(LearnerConfig.from_dict(meta["config"]))
    learner._load_model(path)
    learner.state = LearnerState(**meta["state"])
    learner._rng.bit_generator.state = meta["rng"]
    return learner
