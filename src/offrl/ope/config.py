"""The settings of off-policy evaluation: one frozen dataclass, every field documented."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from offrl.errors import ConfigError
from offrl.overrides import replace_fields

# Every estimator `estimate` knows, in the order results are reported.
ESTIMATORS = ("fqe", "is", "pdis", "wis", "wpdis", "dr", "mb")
IMPORTANCE = ("is", "pdis", "wis", "wpdis", "dr")  # the estimators that need π/μ ratios
MODEL = ("fqe", "dr")  # the estimators that need the FQE critic
MODEL_BASED = ("mb",)  # the estimators that need a dynamics model


@dataclass(frozen=True)
class OPEConfig:
    # Target policy of the importance-sampling estimators (IS, PDIS, WIS, WPDIS, DR).
    target_std: float = 0.1  # σ of the Gaussian around π(s), truncated to [-1, 1] (unit actions)
    target_epsilon: float = 0.05  # ε of the ε-greedy policy around the greedy action (discrete)
    max_weight: float | None = None  # clip every cumulative weight w_t to <= this; None: no clip
    # Bootstrap confidence intervals over episodes.
    num_bootstrap: int = 1000  # resamples of the episodes
    confidence: float = 0.95  # the interval's coverage: percentiles (1 ∓ c) / 2
    # FQE (the model of DR too).
    fqe_steps: int = 50_000  # TD updates
    fqe_hidden: tuple[int, ...] = (256, 256)
    fqe_critics: int = 2  # independent critics; 1: a single critic
    fqe_target: str = "mean"  # how the critics combine in the target and estimate: mean | min
    fqe_lr: float = 3e-4  # Adam
    fqe_tau: float = 0.005  # Polyak rate of the target critics
    fqe_batch_size: int = 256
    # Behaviour model, fitted when the dataset has no logged log-probabilities.
    behavior_steps: int = 10_000  # max-likelihood updates
    behavior_hidden: tuple[int, ...] = (256, 256)
    behavior_lr: float = 1e-3  # Adam
    behavior_batch_size: int = 256
    # Model-based OPE: rollouts in a dynamics ensemble (offrl.dynamics).
    mb_model: str | None = None  # directory of an `offrl model train` model; None: fit one
    mb_epochs: int = 0  # max epochs of that fit; 0: until early stopping
    mb_horizon: int = 0  # steps per rollout; 0: the data's longest episode
    mb_rollouts: int = 1  # rollouts per initial state
    # Shared.
    normalize_obs: bool = True  # standardize observations for the FQE and behaviour nets
    chunk_size: int = 1000  # updates fused into one compiled call (lax.scan)
    eval_batch: int = 8192  # rows per call of act_fn and of the nets over the whole dataset


def check_config(cfg: OPEConfig) -> None:
    """One-line ConfigError for a setting outside its range."""
    checks = [
        (cfg.target_std > 0, f"target_std must be > 0, got {cfg.target_std}"),
        (
            0 <= cfg.target_epsilon <= 1,
            f"target_epsilon must be in [0, 1], got {cfg.target_epsilon}",
        ),
        (
            cfg.max_weight is None or cfg.max_weight > 0,
            f"max_weight must be > 0 or None, got {cfg.max_weight}",
        ),
        (cfg.num_bootstrap >= 1, f"num_bootstrap must be >= 1, got {cfg.num_bootstrap}"),
        (0 < cfg.confidence < 1, f"confidence must be in (0, 1), got {cfg.confidence}"),
        (cfg.fqe_steps >= 0, f"fqe_steps must be >= 0, got {cfg.fqe_steps}"),
        (cfg.fqe_critics >= 1, f"fqe_critics must be >= 1, got {cfg.fqe_critics}"),
        (
            cfg.fqe_target in ("mean", "min"),
            f"fqe_target must be mean or min, got {cfg.fqe_target!r}",
        ),
        (0 < cfg.fqe_tau <= 1, f"fqe_tau must be in (0, 1], got {cfg.fqe_tau}"),
        (cfg.behavior_steps >= 0, f"behavior_steps must be >= 0, got {cfg.behavior_steps}"),
        (min(cfg.fqe_batch_size, cfg.behavior_batch_size) >= 1, "batch sizes must be >= 1"),
        (min(cfg.chunk_size, cfg.eval_batch) >= 1, "chunk_size and eval_batch must be >= 1"),
        (min(cfg.mb_epochs, cfg.mb_horizon) >= 0, "mb_epochs and mb_horizon must be >= 0"),
        (cfg.mb_rollouts >= 1, f"mb_rollouts must be >= 1, got {cfg.mb_rollouts}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"OPE config: {message}")


def check_estimators(names: Sequence[str] | str) -> tuple[str, ...]:
    """The requested estimators, validated, in the order of ESTIMATORS (duplicates dropped)."""
    names = parse_estimators(names) if isinstance(names, str) else tuple(names)
    unknown = [n for n in names if n not in ESTIMATORS]
    if unknown:
        raise ConfigError(
            f"unknown estimator(s) {', '.join(map(repr, unknown))}; "
            f"choose from: {', '.join(ESTIMATORS)}, all"
        )
    if not names:
        raise ConfigError(f"no estimator given; choose from: {', '.join(ESTIMATORS)}, all")
    return tuple(n for n in ESTIMATORS if n in names)


def parse_estimators(text: str) -> tuple[str, ...]:
    """ "all", one name or a comma-separated list ("fqe,dr") -> names (not yet validated)."""
    if text.strip() == "all":
        return ESTIMATORS
    return tuple(part.strip() for part in text.split(",") if part.strip())


def config_from_overrides(overrides: dict[str, str | object]) -> OPEConfig:
    """An OPEConfig with fields replaced, values given as CLI strings ("0.2", "64,64", "none")
    or as Python values. An unknown field or an unreadable value is a one-line ConfigError."""
    cfg = replace_fields(OPEConfig, overrides, what="OPE config")
    check_config(cfg)
    return cfg
