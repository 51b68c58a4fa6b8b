"""Online DQN behaviour agents for discrete-action environments, with the whole replay logged.

The agent is offrl's offline DQN (offrl.algos.dqn, or ddqn): its networks, Huber loss, hard
target copy and `update` are used as they are; only the loop around them is online. The
loop follows the discrete BCQ benchmark's behavioural DQN (Fujimoto et al. 2019, reference
code sfujim/BCQ discrete_BCQ/main.py, which takes its Atari schedule from Dopamine):

    steps [0, start_steps)     uniform random actions (ε = 1); no updates
    from start_steps           ε-greedy on the current Q, ε falling linearly from
                               epsilon_start to epsilon_end over epsilon_decay_steps, then
                               held; one update per environment step on average, `update_every`
                               of them fused into one compiled call every `update_every` steps,
                               each on a minibatch drawn uniformly from the last `buffer_size`
                               transitions (a FIFO replay buffer of that capacity)

The acting policy changes every `update_every` steps (when a fused chunk has run). Every
transition is logged with the ε it was chosen with and the number of updates its acting
network had made (`policy_update`, which names that network exactly), and the snapshot
interval it falls in (`snapshot`: k means after snapshots/step_{k·snapshot_every}, 0 before
the first). The log is the `*-replay` recipe's dataset (Agarwal, Schuurmans & Norouzi 2020:
the full experience of one DQN run, its policy changing along the way). Sticky actions come
from the environment where it has them (offrl.envs.minatar); the log holds the action the
agent chose, as Dopamine's logged replays do.

Everything random derives from (seed, counter), as in offrl.behavior.online: episode e
resets the environment with episode_seed(seed, e) and draws its ε-greedy coin flips and
random actions from a generator seeded with (seed, 4, e); the minibatch indices of the chunk
ending at step t from (seed, 3, t). A checkpoint (agent state, counters, the log's part files)
is written at the first episode end after every `checkpoint_every` steps and at the end of
the run when it ends an episode, so a resumed run makes exactly the steps it would have made,
and re-running a configuration reproduces its replay bit for bit on the same machine and
library versions (`replay_of`, which the `*-replay` recipe uses; `replay_digest` checks it).

Run directory:
    config.json             the DQNBehaviorConfig
    checkpoint/             state.msgpack + meta.json (step, episode, the log parts it covers)
    replay/part_A_B.npz     logged transitions [A, B), written at checkpoints and at the end
    snapshots/step_N.msgpack   Q parameters and transforms every `snapshot_every` steps
    snapshots.jsonl         per snapshot: ε, losses, evaluation return at eval ε (0.001)
    episodes.jsonl          every training episode's return, length and ε at its end
    summary.json            steps, speed, the replay's row count and digest
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path
from typing import Any

import flax.serialization
import gymnasium as gym
import jax
import numpy as np
from tqdm.auto import tqdm

from offrl import algos, checkpoint
from offrl.algos import make_algo_config
from offrl.atomic import atomic_path, atomic_write, atomic_write_json, truncate_jsonl
from offrl.behavior.online import (
    CHECKPOINT_DIR,
    EPISODE_LOG,
    SNAPSHOT_LOG,
    append_jsonl,
    episode_seed,
    make_fused_update,
    open_run_dir,
    progress_bar,
    read_jsonl,
    replay_digest,
    snapshot_path,
)
from offrl.core import Batch, template_spec
from offrl.envs.rollout import env_spaces, make_env, rollout
from offrl.errors import ConfigError
from offrl.evaluate import compiled_act, jax_policy

DQN_ALGOS = ("dqn", "ddqn")
REPLAY_DIR, SUMMARY_FILE = "replay", "summary.json"
EVAL_SEED = 10**6  # evaluation episodes at snapshot step t use seeds EVAL_SEED + t + i
# One compiled update chunk per (algorithm, config): runs in one process (a replay made again
# after its training, tests) share it instead of compiling again.
fused_update = functools.lru_cache(maxsize=8)(make_fused_update)


@dataclasses.dataclass(frozen=True)
class DQNBehaviorConfig:
    """One online DQN run; saved as config.json. Defaults: the benchmark paper's Atari
    schedule scaled to the small tasks (ENV_DEFAULTS sets each environment's)."""

    env_id: str
    algo: str = "dqn"  # dqn | ddqn
    steps: int = 100_000  # environment steps
    seed: int = 0
    start_steps: int = 1_000  # uniform random actions first; updates begin after them
    epsilon_start: float = 1.0  # ε at start_steps
    epsilon_end: float = 0.01  # ε after the decay (the benchmark paper's end ε)
    epsilon_decay_steps: int = 10_000  # steps of the linear decay, from start_steps
    buffer_size: int = 1_000_000  # minibatches come from the last this-many transitions
    update_every: int = 50  # environment steps between fused update chunks
    snapshot_every: int = 5_000  # Q snapshot + evaluation every this many steps
    checkpoint_every: int = 25_000  # resumable checkpoint at the first episode end after this
    eval_episodes: int = 10
    algo_config: dict = dataclasses.field(default_factory=dict)  # dqn.Config overrides

    def check(self) -> None:
        if self.algo not in DQN_ALGOS:
            raise ConfigError(f"algo {self.algo!r}: choose {', '.join(DQN_ALGOS)}")
        positive = ("steps", "update_every", "snapshot_every", "checkpoint_every")
        for name in positive + ("epsilon_decay_steps", "buffer_size", "eval_episodes"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.start_steps < 0:
            raise ConfigError(f"start_steps must be >= 0, got {self.start_steps}")
        for name in ("epsilon_start", "epsilon_end"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.start_steps % self.update_every or self.snapshot_every % self.update_every:
            raise ConfigError("start_steps and snapshot_every must be multiples of update_every")


# Per-environment schedules, sized for a 2-core CPU. CartPole and Acrobot: Dopamine's learning
# rate and target period for them (Adam lr 1e-3, a copy every 100 updates; dqn's defaults,
# lr 3e-4 and every 1000, left CartPole's greedy return between 100 and 270 for most of 100k
# steps, measured), 1k random steps, ε from 1 to 0.01 over 10k. LunarLander: the RL Zoo's
# tuned DQN (lr 6.3e-4, batch 128, a 50k buffer, a copy every 250 updates), ε to 0.1 over 12%
# of the run. MinAtar: MinAtar's own DQN example (5k random steps, ε from 1 to 0.1 over 100k,
# a 100k buffer, batch 32, a copy every 1000 updates) for 1M steps instead of its 5M.
_SMALL = dict(steps=100_000, snapshot_every=2_500, checkpoint_every=25_000)
_DOPAMINE = {"lr": 1e-3, "target_update_period": 100}
_MINATAR = dict(
    steps=1_000_000,
    start_steps=5_000,
    epsilon_end=0.1,
    epsilon_decay_steps=100_000,
    buffer_size=100_000,
    snapshot_every=25_000,
    checkpoint_every=100_000,
    algo_config={"batch_size": 32},
)
ENV_DEFAULTS: dict[str, dict[str, Any]] = {
    "CartPole-v1": _SMALL | {"algo_config": _DOPAMINE},
    "Acrobot-v1": _SMALL | {"algo_config": _DOPAMINE},
    "LunarLander-v3": dict(
        steps=200_000,
        epsilon_end=0.1,
        epsilon_decay_steps=24_000,
        buffer_size=50_000,
        snapshot_every=5_000,
        checkpoint_every=50_000,
        algo_config={"lr": 6.3e-4, "batch_size": 128, "target_update_period": 250},
    ),
    "offrl/MinAtarBreakout-v0": _MINATAR,
    "offrl/MinAtarSpaceInvaders-v0": _MINATAR,
}


def default_config(env_id: str, **overrides) -> DQNBehaviorConfig:
    """The config for `env_id` with its schedule from ENV_DEFAULTS, then the overrides given
    (None means not given); algo_config overrides merge into the environment's."""
    given = {k: v for k, v in overrides.items() if v is not None}
    base = dict(ENV_DEFAULTS.get(env_id, {}))
    if "algo_config" in given:
        given["algo_config"] = base.get("algo_config", {}) | given["algo_config"]
    return DQNBehaviorConfig(env_id=env_id, **(base | given))


def epsilon_at(bc: DQNBehaviorConfig, step: int) -> float:
    """ε of the action taken at environment step `step` (0-based)."""
    if step < bc.start_steps:
        return 1.0
    progress = min(1.0, (step - bc.start_steps) / bc.epsilon_decay_steps)
    return bc.epsilon_start + progress * (bc.epsilon_end - bc.epsilon_start)


# --------------------------------------------------------------------------- the replay log


class ReplayLog:
    """Every transition of the run in step order, in Dataset column names. Minibatches come
    from its last `window` rows, which makes it the run's FIFO replay buffer too."""

    EXTRA = ("epsilon", "policy_update", "snapshot")

    def __init__(self, capacity: int, obs_dim: int):
        self.size = 0
        self.cols = {
            "observations": np.zeros((capacity, obs_dim), np.float32),
            "actions": np.zeros((capacity, 1), np.int64),
            "rewards": np.zeros(capacity, np.float32),
            "next_observations": np.zeros((capacity, obs_dim), np.float32),
            "terminals": np.zeros(capacity, bool),
            "timeouts": np.zeros(capacity, bool),
            "epsilon": np.zeros(capacity, np.float32),
            "policy_update": np.zeros(capacity, np.int64),
            "snapshot": np.zeros(capacity, np.int64),
        }

    def add(self, **row) -> None:
        for name, value in row.items():
            self.cols[name][self.size] = value
        self.size += 1

    def batches(self, rng: np.random.Generator, count: int, batch_size: int, window: int) -> Batch:
        """`count` minibatches from the last `window` rows, stacked for lax.scan."""
        idx = rng.integers(max(0, self.size - window), self.size, (count, batch_size))
        c = self.cols
        return Batch(
            obs=c["observations"][idx],
            act=c["actions"][idx, 0].astype(np.int32),
            rew=c["rewards"][idx],
            next_obs=c["next_observations"][idx],
            done=c["terminals"][idx].astype(np.float32),  # timeouts bootstrap
        )

    def columns(self, start: int = 0, end: int | None = None) -> dict[str, np.ndarray]:
        end = self.size if end is None else end
        return {k: v[start:end] for k, v in self.cols.items()}

    def write_part(self, directory: Path, start: int) -> str:
        """Rows [start, size) as one part file; returns its name."""
        name = f"part_{start:010d}_{self.size:010d}.npz"
        with atomic_path(directory / name) as tmp, open(tmp, "wb") as f:
            np.savez(f, **self.columns(start))
        return name

    def load_parts(self, directory: Path, names: list[str]) -> None:
        """Read back the given consecutive part files (a checkpoint's)."""
        for name in names:
            with np.load(directory / name) as part:
                rows = len(part["rewards"])
                for k in self.cols:
                    self.cols[k][self.size : self.size + rows] = part[k]
            self.size += rows


def _part_span(name: str) -> tuple[int, int]:
    start, end = name.removeprefix("part_").removesuffix(".npz").split("_")
    return int(start), int(end)


def read_replay(run_dir: str | Path) -> dict[str, np.ndarray]:
    """The logged replay of a finished run: its part files, checked to chain from step 0
    to the run's last step."""
    run_dir = Path(run_dir)
    summary_path = run_dir / SUMMARY_FILE
    if not summary_path.exists():
        raise ConfigError(f"{run_dir}: no {SUMMARY_FILE}; the run has not finished")
    summary = json.loads(summary_path.read_text())
    parts, end = [], 0
    for name in summary["replay_parts"]:
        start, stop = _part_span(name)
        if start != end or not (run_dir / REPLAY_DIR / name).exists():
            raise ConfigError(f"{run_dir / REPLAY_DIR}: part {name} missing or out of order")
        with np.load(run_dir / REPLAY_DIR / name) as part:
            parts.append({k: part[k] for k in part.files})
        end = stop
    if end != summary["steps"]:
        raise ConfigError(f"{run_dir / REPLAY_DIR}: holds {end} of {summary['steps']} steps")
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# --------------------------------------------------------------------------- snapshots


def save_q(path: Path, state) -> None:
    """The acting part of a DQN state: Q parameters and transforms."""
    atomic_write(path, flax.serialization.to_bytes({"q": state.q.params, "tf": state.tf}))


def load_q(path: Path, template):
    """A state whose Q parameters and transforms are read from `path` (the rest from
    `template`)."""
    payload = {"q": template.q.params, "tf": template.tf}
    payload = flax.serialization.from_bytes(payload, path.read_bytes())
    return template.replace(q=template.q.replace(params=payload["q"]), tf=payload["tf"])


def discrete_spaces(env_id: str) -> tuple[int, int]:
    """(obs_dim, num_actions) of an environment with flat observations and Discrete actions."""
    obs_space, space = env_spaces(env_id)
    if not isinstance(space, gym.spaces.Discrete):
        raise ConfigError(f"{env_id}: DQN behaviour agents need a Discrete action space")
    if len(obs_space.shape) != 1:
        raise ConfigError(f"{env_id}: observations must be flat vectors, got {obs_space}")
    return int(obs_space.shape[0]), int(space.n)


# --------------------------------------------------------------------------- the run


class _DQNRun:
    """One run; `out=None` runs without files (no snapshots, evaluations or checkpoints) and
    keeps only the log, to regenerate a replay."""

    def __init__(self, bc: DQNBehaviorConfig, out: Path | None, progress: bool):
        self.bc, self.out, self.progress = bc, out, progress
        self.algo = algos.get(bc.algo)
        self.cfg = make_algo_config(bc.algo, bc.algo_config)
        obs_dim, self.num_actions = discrete_spaces(bc.env_id)
        self.env = make_env(bc.env_id)
        root = jax.random.key(bc.seed)
        spec = template_spec(obs_dim, 1, self.num_actions)  # identity transforms: raw obs
        self.state = self.algo.init(self.cfg, spec, jax.random.fold_in(root, 0))
        self.update_key = jax.random.fold_in(root, 2)
        self.greedy = compiled_act(self.algo, self.cfg, True)
        self.no_key = jax.random.key(0)  # greedy acting draws nothing
        self.fused = fused_update(self.algo, self.cfg)
        self.log = ReplayLog(bc.steps, obs_dim)
        self.step, self.episode, self.updates, self.parts = 0, 0, 0, []
        self.metrics: dict = {}

    # ------------------------------------------------------------------ resume
    def resume(self) -> None:
        ckpt = self.out / CHECKPOINT_DIR
        if not checkpoint.exists(ckpt):
            return
        self.state, meta = checkpoint.load(ckpt, self.state)
        self.step, self.episode, self.parts = meta["step"], meta["episode"], meta["parts"]
        self.updates = int(self.state.step)
        self.log.load_parts(self.out / REPLAY_DIR, self.parts)
        for stale in set(p.name for p in (self.out / REPLAY_DIR).glob("part_*")) - set(self.parts):
            (self.out / REPLAY_DIR / stale).unlink()  # written after the checkpoint
        for log in (SNAPSHOT_LOG, EPISODE_LOG):
            truncate_jsonl(self.out / log, self.step)

    def _write_log(self) -> None:
        written = _part_span(self.parts[-1])[1] if self.parts else 0
        if self.out is not None and written < self.log.size:
            self.parts.append(self.log.write_part(self.out / REPLAY_DIR, written))

    def _checkpoint(self) -> None:
        self._write_log()  # first: the meta names the parts that are complete
        meta = {"step": self.step, "episode": self.episode, "parts": self.parts}
        checkpoint.save(self.out / CHECKPOINT_DIR, self.state, meta)

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict:
        bc = self.bc
        bar = progress_bar(bc, self.step, self.progress)
        last_checkpoint = self.step
        started, steps_at_start = time.perf_counter(), self.step
        while self.step < bc.steps:
            ret, length, ended = self._episode(bar)
            if self.out is None:
                continue
            record = {"step": self.step, "return": ret, "length": length}
            append_jsonl(self.out / EPISODE_LOG, record | {"epsilon": epsilon_at(bc, self.step)})
            bar.set_postfix(ret=f"{ret:.0f}", eps=f"{epsilon_at(bc, self.step):.3f}", refresh=False)
            due = self.step - last_checkpoint >= bc.checkpoint_every or self.step >= bc.steps
            if ended and due:  # only at episode ends: a resumed run starts a fresh episode
                self._checkpoint()
                last_checkpoint = self.step
        bar.close()
        if self.log.size and not self.log.cols["terminals"][self.log.size - 1]:
            self.log.cols["timeouts"][self.log.size - 1] = True  # the budget cut the episode
        if self.out is None:
            return {}
        self._write_log()
        elapsed = time.perf_counter() - started
        summary = {
            "env_id": bc.env_id,
            "algo": bc.algo,
            "seed": bc.seed,
            "steps": self.step,
            "episodes": read_jsonl(self.out / EPISODE_LOG)[-1:],
            "snapshots": read_jsonl(self.out / SNAPSHOT_LOG)[-1:],
            "steps_per_second": (self.step - steps_at_start) / max(elapsed, 1e-9),
            "seconds": elapsed,
            "replay_parts": self.parts,
            "replay_sha256": replay_digest(self.log.columns()),
        }
        atomic_write_json(self.out / SUMMARY_FILE, summary)
        return summary

    def _episode(self, bar) -> tuple[float, int, bool]:
        """One episode, cut short when the step budget ends; returns (return, length, ended)."""
        bc = self.bc
        rng = np.random.default_rng([bc.seed, 4, self.episode])
        obs, _ = self.env.reset(seed=episode_seed(bc.seed, self.episode))
        ret, length, done = 0.0, 0, False
        while not done and self.step < bc.steps:
            epsilon = epsilon_at(bc, self.step)
            action = self._action(obs, epsilon, rng)
            next_obs, rew, term, trunc, _ = self.env.step(action)
            self.log.add(
                observations=obs,
                actions=action,
                rewards=rew,
                next_observations=next_obs,
                terminals=term,
                timeouts=trunc,
                epsilon=epsilon,
                policy_update=self.updates,
                snapshot=self.step // bc.snapshot_every,
            )
            obs, ret, length, done = next_obs, ret + float(rew), length + 1, term or trunc
            self.step += 1
            bar.update(1)
            if self.step >= bc.start_steps and self.step % bc.update_every == 0:
                self._update()
            if self.out is not None and self.step % bc.snapshot_every == 0:
                self._snapshot()
        if done:
            self.episode += 1
        return ret, length, done

    def _action(self, obs: np.ndarray, epsilon: float, rng: np.random.Generator) -> int:
        if rng.random() < epsilon:
            return int(rng.integers(self.num_actions))
        obs = np.asarray(obs, np.float32)[None]
        return int(np.asarray(self.greedy(self.state, obs, self.no_key))[0])

    def _update(self) -> None:
        bc = self.bc
        rng = np.random.default_rng([bc.seed, 3, self.step])
        batches = self.log.batches(rng, bc.update_every, self.cfg.batch_size, bc.buffer_size)
        self.state, self.metrics = self.fused(self.state, batches, self.update_key)
        self.updates += bc.update_every

    def _snapshot(self) -> None:
        save_q(snapshot_path(self.out, self.step), self.state)
        metrics = {k: float(v) for k, v in jax.device_get(self.metrics).items()}
        record: dict[str, Any] = {"step": self.step, "epsilon": epsilon_at(self.bc, self.step)}
        # ε = the config's eval_epsilon (0.001), the benchmark paper's evaluation ε
        policy = jax_policy(self.algo, self.cfg, self.state, deterministic=False, seed=self.step)
        r = rollout(self.bc.env_id, policy, self.bc.eval_episodes, seed=EVAL_SEED + self.step)
        record |= {"return_mean": float(r.returns.mean()), "return_std": float(r.returns.std())}
        append_jsonl(self.out / SNAPSHOT_LOG, record | metrics)
        if self.progress:
            tqdm.write(f"step {self.step}: return {record['return_mean']:.1f}")


def train_dqn_behavior(
    bc: DQNBehaviorConfig, out: str | Path, resume: bool = False, progress: bool = True
) -> dict:
    """Train (or resume) one online DQN agent into run directory `out`; returns the summary."""
    bc.check()
    out = Path(out)
    discrete_spaces(bc.env_id)  # first: a bad environment leaves no directory behind
    open_run_dir(dataclasses.asdict(bc), out, resume)
    run = _DQNRun(bc, out, progress)
    if resume:
        run.resume()
    return run.run()


def replay_of(bc: DQNBehaviorConfig, progress: bool = False) -> dict[str, np.ndarray]:
    """Run `bc` again without files and return its logged replay (what the run directory's
    replay/ holds, bit for bit, on the same machine and library versions)."""
    bc.check()
    run = _DQNRun(bc, None, progress)
    run.run()
    return run.log.columns()
