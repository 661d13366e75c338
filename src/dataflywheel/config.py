"""Settings: store location, signal weights, validation limits and the loop schedule.

Values come, in increasing priority, from the defaults below, a TOML settings file
(``flywheel.toml`` in the working directory or ``FLYWHEEL_CONFIG``), ``FLYWHEEL_*`` environment
variables and explicit arguments.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from dataflywheel.errors import ConfigError

DAY = 86_400.0

DEFAULT_DB = "sqlite:///flywheel.db"


class Signal(BaseModel):
    """How one event type feeds the model.

    An event contributes ``weight × (value − offset)`` when ``uses_value`` is set (a watch fraction,
    a rating centred on its midpoint), else ``weight``. ``strong`` marks high-signal feedback
    (explicit likes, ratings, corrections, purchases) for the flywheel's condition 1.
    """

    weight: float
    strong: bool = False
    uses_value: bool = False
    offset: float = 0.0


DEFAULT_SIGNALS: dict[str, Signal] = {
    "impression": Signal(weight=0.0),
    "view": Signal(weight=0.5),
    "click": Signal(weight=1.0),
    "watch": Signal(weight=2.0, uses_value=True),
    "add_to_cart": Signal(weight=2.0),
    "like": Signal(weight=4.0, strong=True),
    "dislike": Signal(weight=-4.0, strong=True),
    "skip": Signal(weight=-0.5),
    "rating": Signal(weight=1.0, strong=True, uses_value=True, offset=2.5),
    "purchase": Signal(weight=5.0, strong=True),
    "correction": Signal(weight=4.0, strong=True),
    "label": Signal(weight=4.0, strong=True, uses_value=True),
}


ContextField = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
"""A declared request context field name."""


class RolloutSettings(BaseModel):
    """Staged rollout: gates, shadow mode, experiments (shares are fractions, times seconds)."""

    # Off by default: the loop promotes on the holdout gate alone. Turn on for staged rollout
    # (offline → shadow → experiment → champion) where traffic allows.
    shadow: bool = False
    experiment: Literal["ab", "interleaving", "none"] = "none"
    # Shadow: how much traffic a shadow candidate must see, and the off-policy gate.
    shadow_min_requests: int = Field(default=200, ge=1)
    shadow_max_seconds: float = Field(default=2 * DAY, gt=0)
    shadow_min_matches: int = Field(default=20, ge=1)
    ope_margin: float = Field(default=0.05, ge=0, lt=1)
    # Experiments started by the loop.
    metric: str = "ctr"
    candidate_weight: float = Field(default=50.0, gt=0, lt=100)
    min_sample_size: int = Field(default=200, ge=2)
    experiment_max_seconds: float = Field(default=7 * DAY, gt=0)
    non_inferiority_margin: float = Field(default=0.02, gt=0, lt=1)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    mde: float = Field(default=0.05, gt=0)
    pre_period_seconds: float = Field(default=14 * DAY, ge=0)
    # Regression suites: how many more failures than the champion a candidate may have.
    regression_tolerance: int = Field(default=0, ge=0)
    regression_k: int = Field(default=10, ge=1, le=200)
    # Watch after promotion: a new champion's click/strong-signal rate per impression against
    # the previous champion's over as long before the promotion; a clear drop rolls back.
    watch_seconds: float = Field(default=DAY, ge=0)
    watch_min_impressions: int = Field(default=200, ge=2)


class Settings(BaseSettings):
    """Everything configurable, with defaults that suit a laptop."""

    model_config = SettingsConfigDict(env_prefix="FLYWHEEL_", extra="ignore")

    db: str = DEFAULT_DB
    artifacts: str | None = None
    signals: dict[str, Signal] = Field(default_factory=lambda: dict(DEFAULT_SIGNALS))
    accept_unknown_types: bool = False

    # Ingestion limits.
    max_batch: int = 10_000
    max_body_bytes: int = 32 * 1024 * 1024
    max_context_bytes: int = 8_192
    max_id_length: int = 256
    max_future_seconds: float = 3_600.0
    # Accepted event values per type, inclusive; "*" covers the types not named (without it:
    # ±1e6). A finite but huge value (1e308) would overflow the training weights.
    value_bounds: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: {"*": (-1e6, 1e6), "rating": (-100.0, 100.0)}
    )
    sqlite_synchronous: str = "FULL"
    # HTTP limits (docs/api.md, "Limits"): JSON nesting, item/user attributes and categories;
    # extra Host names answered without keys (loopback names always are).
    max_json_depth: int = Field(default=32, ge=4)
    max_attributes: int = Field(default=256, ge=0)
    max_attributes_bytes: int = Field(default=65_536, ge=2)
    max_categories: int = Field(default=100, ge=0)
    allowed_hosts: list[str] = Field(default_factory=list)

    # Serving: the exploration policy (see dataflywheel.serve.exploration.make_policy). The
    # default explores 5 % of the slots, below the top 3, on the items ranked just below the list
    # (dataflywheel.serve.exploration_aimed); {"name": "greedy"} turns exploration off.
    exploration: dict[str, Any] = Field(
        default_factory=lambda: {"name": "aimed_epsilon", "epsilon": 0.05}
    )
    # Ranking a given list (`candidates`), and items the champion has not seen (docs/cold-start.md):
    # text vs categories in content vectors, weight of the content-predicted popularity, and the
    # user attributes whose values define segments for users without events.
    max_candidates: int = Field(default=1_000, ge=1)
    content_text_weight: float = Field(default=0.5, ge=0)
    content_prior_weight: float = Field(default=0.1, ge=0)
    # Off: items the champion has not seen wait for a retrain (the comparison baseline).
    content_cold_start: bool = True
    segment_attributes: list[str] = Field(default_factory=lambda: ["segment", "country"])
    # Request context used in ranking (docs/context.md): the declared fields a contextual
    # re-ranker learns from the impression log, and per field the item attribute a request's
    # value must equal (a filter). Empty: context is only logged.
    context_fields: list[ContextField] = Field(default_factory=list)
    context_filters: dict[ContextField, str] = Field(default_factory=dict)

    # KPIs.
    session_gap_seconds: float = 1_800.0

    # The background loop (run by `flywheel serve`).
    loop_enabled: bool = True
    loop_interval_seconds: float = 30.0
    # The loop lease (renewed every third of it while a step runs, so training keeps it).
    loop_lease_seconds: float = Field(default=90.0, gt=0)
    retrain_min_new_events: int = 1_000
    retrain_interval_seconds: float = 3_600.0
    train_model: str = "auto"
    train_budget_seconds: float = 60.0
    train_max_trials: int | None = None
    # "local" trains in this process; "spark" fits ALS in Spark MLlib (the `spark` extra).
    train_engine: Literal["local", "spark"] = "local"
    spark_master: str = "local[2]"
    spark_driver_memory: str = "4g"
    # Seeds serving's exploration and the model search (reproducible simulations).
    seed: int | None = None
    promote_min_gain: float = 0.0
    # The loop measures the value of data (GET /v1/value) this often when events arrived
    # (0: never), in a child process bounded by the budget.
    value_interval_seconds: float = Field(default=86_400.0, ge=0)
    value_budget_seconds: float = Field(default=120.0, gt=0)
    # The loop refits and re-checks the contextual re-ranker (docs/context.md) this often when
    # impressions arrived, and when the champion changed (0: never), in a child process.
    context_rerank_interval_seconds: float = Field(default=3_600.0, ge=0)
    # Events and impressions older than this are deleted by the loop (None: kept forever).
    retention_days: float | None = Field(default=None, gt=0)
    rollout: RolloutSettings = Field(default_factory=RolloutSettings)

    @field_validator("context_fields")
    @classmethod
    def _distinct_fields(cls, fields: list[str]) -> list[str]:
        repeated = sorted({name for name in fields if fields.count(name) > 1})
        if repeated:
            raise ValueError(f"context field {repeated[0]!r} is declared more than once")
        return fields

    @field_validator("context_filters")
    @classmethod
    def _declared_filters(cls, filters: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        declared = info.data.get("context_fields") or []
        for name, attribute in filters.items():
            if name not in declared:
                raise ValueError(f"context field {name!r} filters but is not in context_fields")
            if not attribute:
                raise ValueError(f"context field {name!r} must name an item attribute")
        return filters

    def artifacts_dir(self) -> Path:
        """Where model artifacts live: beside the SQLite file, or the configured location."""
        if self.artifacts:
            path = self.artifacts.removeprefix("file://")
            if "://" in path:
                raise ConfigError(
                    "artifacts must be a local directory (a path or file://...)", field="artifacts"
                )
            return Path(path)
        if self.db.startswith("sqlite:///"):
            path = self.db.removeprefix("sqlite:///")
            if path and path != ":memory:":
                db_path = Path(path)
                return db_path.with_name(db_path.stem + ".artifacts")
        return Path("flywheel.artifacts")

    def signal(self, event_type: str) -> Signal | None:
        return self.signals.get(event_type)

    def value_bound(self, event_type: str) -> tuple[float, float]:
        """The inclusive bounds of an event value of this type (``value_bounds``)."""
        bounds = self.value_bounds
        return bounds.get(event_type) or bounds.get("*", (-1e6, 1e6))


def load_settings(**overrides: Any) -> Settings:
    """Settings from the TOML file and environment, then ``overrides`` (``None`` values ignored)."""
    file_values: dict[str, Any] = {}
    path = Path(os.environ.get("FLYWHEEL_CONFIG", "flywheel.toml"))
    if path.exists():
        try:
            file_values = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read settings file {path}: {exc}") from exc
        if "signals" in file_values:
            file_values["signals"] = {**DEFAULT_SIGNALS, **file_values["signals"]}
    values = {**file_values, **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return Settings(**values)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"invalid setting {field}: {first['msg']}", field=field) from exc
