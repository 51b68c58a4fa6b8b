"""Online training of a behaviour agent in one gymnasium environment.

The loop of SpinningUp's SAC/TD3 (and the TD3 paper's code): `start_steps` uniformly random
actions, then the agent's exploring actions; from `start_steps` on, after every
`update_every` environment steps, as many updates as steps (one update per step on
average), fused into one compiled call with lax.scan.

Everything random derives from (seed, counter): episode e resets the environment with a
seed derived from (seed, e) and draws its uniform actions from a generator seeded the same
way; the action key of step t is fold_in(act key, t); the minibatch indices of the chunk
ending at step t come from a generator seeded with (seed, t); update u's key is
fold_in(update key, u). A checkpoint is written at the first episode end after every
`checkpoint_every` steps (agent state, replay buffer, counters), so a run killed at any
moment resumes from its last checkpoint and makes exactly the steps it would have made.

Run directory:
    config.json          the BehaviorConfig
    checkpoint/          state.msgpack + meta.json (env step, episode) — resume point
    buffer.npz           the replay buffer at the checkpoint
    actions.npz          instead of buffer.npz in a packed copy (`pack_run`): the actions the
                         run took and their log-densities, from which resuming rebuilds the
                         buffer by stepping the environment again, checked by its digest
    snapshots/step_N.msgpack   actor parameters and transforms every `snapshot_every` steps
    snapshots.jsonl      per snapshot: evaluation returns, deterministic and exploring
    episodes.jsonl       every training episode's return and length

The buffer is the run's replay log: `buffer_dataset` turns its first N transitions into
dataset columns (D4RL's medium-replay is the agent's buffer up to the medium snapshot), read
from the run directory (`read_buffer`) or made again without files by re-running the training
for N steps (`replay_of`); `replay_digest` says whether two replays are the same bit for bit
(same machine and library versions).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import flax.serialization
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from offrl import algos, checkpoint
from offrl.algos import make_algo_config
from offrl.atomic import atomic_path, atomic_write, atomic_write_json, truncate_jsonl
from offrl.core import Batch, Spec
from offrl.data.transforms import Transforms, unit_log_jacobian
from offrl.envs.rollout import LoggingPolicy, make_env, rollout
from offrl.errors import ConfigError
from offrl.evaluate import compiled_act, jax_policy
from offrl.nets.policies import tanh_gaussian_sample

ONLINE_ALGOS = ("sac", "td3", "ddpg")
CONFIG_FILE, BUFFER_FILE, SNAPSHOT_LOG, EPISODE_LOG, ACTIONS_FILE = (
    "config.json",
    "buffer.npz",
    "snapshots.jsonl",
    "episodes.jsonl",
    "actions.npz",
)
SNAPSHOT_DIR, CHECKPOINT_DIR = "snapshots", "checkpoint"
CHECKPOINT_FILES = tuple(
    f"{CHECKPOINT_DIR}/{f}" for f in (checkpoint.STATE_FILE, checkpoint.META_FILE)
)


@dataclasses.dataclass(frozen=True)
class BehaviorConfig:
    """One online training run; saved as config.json."""

    env_id: str
    algo: str = "sac"
    steps: int = 100_000  # environment steps (= updates after start_steps, one per step)
    seed: int = 0
    start_steps: int = 10_000  # uniform random actions first; updates begin after them
    update_every: int = 50  # environment steps between fused update chunks
    snapshot_every: int = 5_000  # policy snapshot + evaluation every this many steps
    checkpoint_every: int = 25_000  # resumable checkpoint at the first episode end after this
    eval_episodes: int = 5
    algo_config: dict = dataclasses.field(default_factory=dict)  # overrides, by field name

    def check(self) -> None:
        if self.algo not in ONLINE_ALGOS:
            raise ConfigError(
                f"behaviour algorithm {self.algo!r}: choose {', '.join(ONLINE_ALGOS)}"
            )
        for name in ("steps", "update_every", "snapshot_every", "checkpoint_every"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.start_steps % self.update_every or self.snapshot_every % self.update_every:
            raise ConfigError("start_steps and snapshot_every must be multiples of update_every")


# Per-environment schedules: steps is what fits a 2-core CPU (a run resumed with more steps
# continues); start_steps follows SpinningUp (10k on locomotion), less on the small tasks.
ENV_DEFAULTS: dict[str, dict[str, int]] = {
    "Pendulum-v1": dict(
        steps=20_000, start_steps=1_000, snapshot_every=1_000, checkpoint_every=5_000
    ),
    "InvertedDoublePendulum-v5": dict(
        steps=60_000, start_steps=5_000, snapshot_every=2_500, checkpoint_every=10_000
    ),
    "Hopper-v5": dict(steps=300_000, start_steps=10_000, snapshot_every=5_000),
    "HalfCheetah-v5": dict(steps=300_000, start_steps=10_000, snapshot_every=5_000),
    "Walker2d-v5": dict(steps=300_000, start_steps=10_000, snapshot_every=5_000),
}


def default_config(env_id: str, **overrides) -> BehaviorConfig:
    """The BehaviorConfig for `env_id` with its schedule from ENV_DEFAULTS, then overrides."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return BehaviorConfig(env_id=env_id, **(ENV_DEFAULTS.get(env_id, {}) | given))


def env_transforms(env: gym.Env) -> Transforms:
    """Raw observations, actions mapped from the environment's bounds, rewards unscaled."""
    obs_dim = env.observation_space.shape[0]
    space = env.action_space
    if not isinstance(space, gym.spaces.Box):
        raise ConfigError(f"{env.spec.id}: behaviour agents need a continuous (Box) action space")
    return Transforms(
        obs_mean=np.zeros(obs_dim, np.float32),
        obs_std=np.ones(obs_dim, np.float32),
        act_low=space.low.astype(np.float32),
        act_high=space.high.astype(np.float32),
        reward_scale=np.float32(1.0),
        reward_shift=np.float32(0.0),
    )


def progress_bar(bc, step: int, enabled: bool) -> tqdm:
    """The behaviour loops' bar over environment steps; per-episode postfixes are shown at
    tqdm's own refresh rate, not forced (a redirected log would get a line per episode)."""
    return tqdm(
        total=bc.steps,
        initial=step,
        disable=not enabled,
        unit="step",
        desc=f"{bc.algo} {bc.env_id}",
        dynamic_ncols=True,
    )


def episode_seed(seed: int, episode: int) -> int:
    return int(np.random.SeedSequence([seed, episode]).generate_state(1)[0])


class ReplayBuffer:
    """Preallocated numpy columns; actions stored in [-1, 1] as the networks see them.

    Beside the transition it keeps what a dataset made from the buffer needs (D4RL's
    medium-replay is the agent's own buffer): `timeout`, the episode cut by the time limit
    at this step, and `logp`, the behaviour log-density of the stored [-1, 1] action (D4RL's
    `infos/action_log_probs`; NaN where the acting policy has no density: TD3/DDPG noise).
    A buffer saved before these columns existed loads with them NaN / 0.
    """

    COLUMNS = ("obs", "act", "rew", "next_obs", "done", "timeout", "logp")

    def __init__(self, capacity: int, obs_dim: int, act_dim: int):
        self.size = 0
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.act = np.zeros((capacity, act_dim), np.float32)
        self.rew = np.zeros(capacity, np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.done = np.zeros(capacity, np.float32)  # terminals only: timeouts bootstrap
        self.timeout = np.zeros(capacity, np.float32)
        self.logp = np.full(capacity, np.nan, np.float32)

    def add(self, obs, act, rew, next_obs, terminal: bool, timeout: bool = False, logp=np.nan):
        i = self.size
        self.obs[i], self.act[i], self.rew[i], self.next_obs[i] = obs, act, rew, next_obs
        self.done[i], self.timeout[i], self.logp[i] = float(terminal), float(timeout), logp
        self.size += 1

    def batches(self, rng: np.random.Generator, count: int, batch_size: int) -> Batch:
        """`count` minibatches, stacked on a leading axis for lax.scan."""
        idx = rng.integers(0, self.size, (count, batch_size))
        return Batch(*(jnp.asarray(getattr(self, c)[idx]) for c in self.COLUMNS[:5]))

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **{c: getattr(self, c)[: self.size] for c in self.COLUMNS})

    def load(self, path: Path, size: int) -> None:
        with np.load(path) as saved:
            for c in self.COLUMNS:
                if c in saved:
                    getattr(self, c)[:size] = saved[c][:size]
        self.size = size

    def digest(self) -> str:
        """sha256 of every column of the filled rows: equal digests, equal buffers."""
        h = hashlib.sha256()
        for c in self.COLUMNS:
            h.update(np.ascontiguousarray(getattr(self, c)[: self.size]).tobytes())
        return h.hexdigest()


def unit_to_env(unit: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """[-1, 1] -> environment action, in numpy: no device dispatch per environment step."""
    return low + (unit + 1.0) * 0.5 * (high - low)


def buffer_dataset(
    buffer: dict[str, np.ndarray], until: int, low: np.ndarray, high: np.ndarray
) -> dict[str, np.ndarray]:
    """Dataset columns of a buffer's first `until` transitions (ReplayBuffer.COLUMNS):
    actions in the environment's units, as they were sent to it; the last row a timeout
    when its episode went on past `until`; behaviour log-densities in environment units
    (NaN where the acting policy had none)."""
    if len(buffer["rew"]) < until:
        raise ConfigError(f"the buffer holds {len(buffer['rew'])} transitions, not {until}")
    terminals = buffer["done"][:until] > 0
    timeouts = buffer["timeout"][:until] > 0
    if until:
        timeouts[-1] |= not terminals[-1]
    logp = buffer["logp"][:until] - unit_log_jacobian(low, high)
    return {
        "observations": buffer["obs"][:until],
        "actions": unit_to_env(buffer["act"][:until], low, high).astype(np.float32),
        "rewards": buffer["rew"][:until],
        "next_observations": buffer["next_obs"][:until],
        "terminals": terminals,
        "timeouts": timeouts,
        "behavior_log_probs": logp.astype(np.float32),
    }


def read_buffer(run_dir: str | Path) -> dict[str, np.ndarray]:
    """The replay buffer saved in a run directory: every transition up to its last
    checkpoint (rows past the checkpoint's step, written just before a kill, are the same
    run's next transitions)."""
    path = Path(run_dir) / BUFFER_FILE
    if not path.exists():
        raise ConfigError(f"{run_dir}: no {BUFFER_FILE}; not a behaviour run directory")
    with np.load(path) as saved:
        missing = [c for c in ReplayBuffer.COLUMNS if c not in saved]
        if missing:
            raise ConfigError(f"{path}: no column {missing[0]!r} (saved by an older offrl)")
        return {c: saved[c] for c in ReplayBuffer.COLUMNS}


def replay_of(bc: BehaviorConfig, progress: bool = False) -> dict[str, np.ndarray]:
    """Run `bc` again without files (no snapshots, no checkpoints) and return its replay
    buffer: the run directory's buffer.npz, bit for bit, on the same machine and library
    versions. A run of N steps is the first N steps of any longer run of the same config."""
    bc.check()
    run = _OnlineRun(bc, None, progress)
    run.run()
    return {c: getattr(run.buffer, c)[: run.buffer.size] for c in ReplayBuffer.COLUMNS}


def replay_digest(cols: dict[str, np.ndarray]) -> str:
    """sha256 of a replay's dataset columns: equal digests, equal replays."""
    h = hashlib.sha256()
    for name in ("observations", "actions", "rewards", "next_observations", "terminals"):
        h.update(np.ascontiguousarray(cols[name]).tobytes())
    h.update(np.ascontiguousarray(cols["timeouts"]).tobytes())
    return h.hexdigest()


def make_explore(algo_name: str, algo, cfg):
    """The exploring action in [-1, 1] and its log-density, jitted. SAC samples its
    tanh-Gaussian exactly as `sac.act` does (same key, same draw); TD3/DDPG add Gaussian
    noise then clip, which has no density: NaN."""
    if algo_name == "sac":

        @jax.jit
        def explore(state, obs, key):
            mean, log_std = state.actor.apply_fn(state.actor.params, state.tf.obs(obs))
            return tanh_gaussian_sample(key, mean, log_std)

        return explore
    act = compiled_act(algo, cfg, False)

    def explore_noisy(state, obs, key):
        env_action = np.asarray(act(state, obs, key))
        low, high = np.asarray(state.tf.act_low), np.asarray(state.tf.act_high)
        unit = 2.0 * (env_action - low) / (high - low) - 1.0
        return np.clip(unit, -1.0, 1.0), np.full(obs.shape[0], np.nan, np.float32)

    return explore_noisy


def logging_policy(algo_name: str, algo, cfg, state, seed: int) -> LoggingPolicy:
    """The exploring policy of `state` as a batch policy that returns its actions'
    log-densities too (environment units). Keys are split as evaluate.jax_policy splits
    them, so a SAC snapshot draws the same actions as jax_policy(..., deterministic=False)."""
    explore = make_explore(algo_name, algo, cfg)
    low, high = np.asarray(state.tf.act_low), np.asarray(state.tf.act_high)
    shift = unit_log_jacobian(low, high)
    key = jax.random.key(seed)

    def policy(obs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        nonlocal key
        key, sub = jax.random.split(key)
        unit, logp = explore(state, jnp.asarray(obs, jnp.float32), sub)
        return unit_to_env(np.asarray(unit), low, high), np.asarray(logp) - shift

    return policy


def make_fused_update(algo, cfg):
    """K updates on K given minibatches in one compiled call; update u's key from u."""

    @jax.jit
    def fused(state, batches: Batch, base_key: jax.Array):
        def body(state, batch):
            key = jax.random.fold_in(base_key, state.step)
            return algo.update(cfg, state, batch, key)

        state, metrics = jax.lax.scan(body, state, batches)
        return state, {k: jnp.nanmean(v) for k, v in metrics.items()}

    return fused


def save_actor(path: Path, state) -> None:
    """The acting part of a state: actor parameters and transforms (a few hundred kB)."""
    payload = {"actor": state.actor.params, "tf": state.tf}
    atomic_write(path, flax.serialization.to_bytes(payload))


def load_actor(path: Path, template):
    """A state whose actor and transforms are read from `path` (the rest from `template`)."""
    payload = {"actor": template.actor.params, "tf": template.tf}
    payload = flax.serialization.from_bytes(payload, path.read_bytes())
    return template.replace(actor=template.actor.replace(params=payload["actor"]), tf=payload["tf"])


def snapshot_path(run_dir: Path, step: int) -> Path:
    return run_dir / SNAPSHOT_DIR / f"step_{step:07d}.msgpack"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []


def append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


class _OnlineRun:
    """The loop; with `out` None it writes nothing (replay_of): no logs, snapshots or
    checkpoints, whose evaluations and files do not change the run's own steps."""

    def __init__(self, bc: BehaviorConfig, out: Path | None, progress: bool):
        self.bc, self.out, self.progress = bc, out, progress
        self.algo = algos.get(bc.algo)
        self.cfg = make_algo_config(bc.algo, bc.algo_config)
        self.env = make_env(bc.env_id)
        self.tf = env_transforms(self.env)
        self.low, self.high = np.asarray(self.tf.act_low), np.asarray(self.tf.act_high)
        obs_dim, act_dim = self.tf.obs_mean.shape[0], self.tf.act_low.shape[0]
        root = jax.random.key(bc.seed)
        self.state = self.algo.init(
            self.cfg, Spec(obs_dim, act_dim, self.tf), jax.random.fold_in(root, 0)
        )
        self.act_key, self.update_key = jax.random.fold_in(root, 1), jax.random.fold_in(root, 2)
        self.buffer = ReplayBuffer(bc.steps, obs_dim, act_dim)
        self.explore = make_explore(bc.algo, self.algo, self.cfg)
        self.fused = make_fused_update(self.algo, self.cfg)
        self.step, self.episode, self.metrics = 0, 0, {}

    # ------------------------------------------------------------------ resume
    def resume(self) -> None:
        ckpt = self.out / CHECKPOINT_DIR
        if not checkpoint.exists(ckpt):
            return
        self.state, meta = checkpoint.load(ckpt, self.state)
        self.step, self.episode = meta["step"], meta["episode"]
        if (self.out / BUFFER_FILE).exists():
            self.buffer.load(self.out / BUFFER_FILE, self.step)
        elif (self.out / ACTIONS_FILE).exists():
            self._replay_actions(self.out / ACTIONS_FILE)
        else:
            raise ConfigError(
                f"{self.out}: a checkpoint but neither {BUFFER_FILE} nor {ACTIONS_FILE}"
            )
        for log in (SNAPSHOT_LOG, EPISODE_LOG):
            truncate_jsonl(self.out / log, self.step)

    def _replay_actions(self, path: Path) -> None:
        """Rebuild the buffer of a packed run: every episode up to the checkpoint reset with
        its seed and stepped with the actions the run took; refused unless the result has
        the packed buffer's digest (another MuJoCo build may step differently)."""
        with np.load(path) as saved:
            act, logp, digest = saved["act"], saved["logp"], str(saved["digest"])
        if len(act) != self.step:
            raise ConfigError(f"{path}: {len(act)} actions for a checkpoint at step {self.step}")
        episode = 0
        while self.buffer.size < self.step:
            obs, _ = self.env.reset(seed=episode_seed(self.bc.seed, episode))
            done = False
            while not done and self.buffer.size < self.step:
                i = self.buffer.size
                action = unit_to_env(act[i], self.low, self.high)
                next_obs, rew, term, trunc, _ = self.env.step(action)
                self.buffer.add(obs, act[i], rew, next_obs, term, trunc and not term, logp[i])
                obs, done = next_obs, term or trunc
            episode += done
        if episode != self.episode or self.buffer.digest() != digest:
            raise ConfigError(
                f"{path}: the actions replayed in {self.bc.env_id} do not make the packed "
                "buffer again (another simulator build?); resume from the original run"
            )

    def _checkpoint(self) -> None:
        self.buffer.save(self.out / BUFFER_FILE)  # first: the meta's step says how much is valid
        checkpoint.save(
            self.out / CHECKPOINT_DIR,
            self.state,
            {"step": self.step, "episode": self.episode, "config": dataclasses.asdict(self.bc)},
        )

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict:
        bc = self.bc
        bar = progress_bar(bc, self.step, self.progress)
        last_checkpoint = self.step
        started, steps_at_start = time.perf_counter(), self.step
        while self.step < bc.steps:
            ret, length = self._episode(bar)
            if self.out is None:
                continue
            append_jsonl(
                self.out / EPISODE_LOG, {"step": self.step, "return": ret, "length": length}
            )
            bar.set_postfix(
                ret=f"{ret:.0f}",
                **{k: f"{v:.3g}" for k, v in self.metrics.items() if k in ("q_mean", "alpha")},
                refresh=False,
            )
            if self.step - last_checkpoint >= bc.checkpoint_every or self.step >= bc.steps:
                self._checkpoint()
                last_checkpoint = self.step
        bar.close()
        if self.out is None:
            return {}
        elapsed = time.perf_counter() - started
        summary = {
            "env_id": bc.env_id,
            "algo": bc.algo,
            "seed": bc.seed,
            "steps": self.step,
            "snapshots": read_jsonl(self.out / SNAPSHOT_LOG)[-1:],
            "steps_per_second": (self.step - steps_at_start) / max(elapsed, 1e-9),
        }
        atomic_write_json(self.out / "summary.json", summary)
        return summary

    def _episode(self, bar) -> tuple[float, int]:
        """One episode (cut short when the step budget ends); updates and snapshots inside."""
        bc = self.bc
        rng = np.random.default_rng([bc.seed, self.episode])
        obs, _ = self.env.reset(seed=episode_seed(bc.seed, self.episode))
        ret, length, done = 0.0, 0, False
        while not done and self.step < bc.steps:
            if self.step < bc.start_steps:
                unit = rng.uniform(-1.0, 1.0, self.low.shape).astype(np.float32)
                logp = -self.low.size * np.log(2.0)  # uniform on [-1, 1]^d
            else:
                key = jax.random.fold_in(self.act_key, self.step)
                unit, logp = self.explore(self.state, obs[None].astype(np.float32), key)
                unit, logp = np.asarray(unit)[0], float(np.asarray(logp)[0])
            action = unit_to_env(unit, self.low, self.high)
            next_obs, rew, term, trunc, _ = self.env.step(action)
            self.buffer.add(obs, unit, rew, next_obs, term, trunc and not term, logp)
            obs, ret, length, done = next_obs, ret + float(rew), length + 1, term or trunc
            self.step += 1
            bar.update(1)
            if self.step >= bc.start_steps and self.step % bc.update_every == 0:
                self._update()
            if self.step % bc.snapshot_every == 0 and self.out is not None:
                self._snapshot()
        if done:
            self.episode += 1
        return ret, length

    def _update(self) -> None:
        rng = np.random.default_rng([self.bc.seed, 3, self.step])
        batches = self.buffer.batches(rng, self.bc.update_every, self.cfg.batch_size)
        self.state, metrics = self.fused(self.state, batches, self.update_key)
        self.metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}

    def _snapshot(self) -> None:
        save_actor(snapshot_path(self.out, self.step), self.state)
        record: dict[str, Any] = {"step": self.step, **self.metrics}
        for label, deterministic in (("", True), ("explore_", False)):
            policy = jax_policy(self.algo, self.cfg, self.state, deterministic, seed=self.step)
            r = rollout(self.bc.env_id, policy, self.bc.eval_episodes, seed=10**6 + self.step)
            record[f"{label}return_mean"] = float(r.returns.mean())
            record[f"{label}return_std"] = float(r.returns.std())
        append_jsonl(self.out / SNAPSHOT_LOG, record)
        if self.progress:
            tqdm.write(
                f"step {self.step}: return {record['return_mean']:.1f} "
                f"(exploring {record['explore_return_mean']:.1f})"
            )


def pack_run(run_dir: str | Path, out: str | Path, snapshot_steps=()) -> dict:
    """A resumable copy of a run without its replay buffer, whose float observations are
    most of a run directory (0.9 GB for Ant at 1M steps, against 36 bytes a step of
    actions): config, checkpoint, logs, the snapshots at `snapshot_steps`, and actions.npz
    (the [-1, 1] actions taken up to the checkpoint, their log-densities and the buffer's
    digest). Resuming the copy replays the actions to rebuild the buffer
    (`_OnlineRun._replay_actions`). Returns {"step", "actions_bytes", "snapshots"}."""
    run_dir, out = Path(run_dir), Path(out)
    if not (run_dir / CONFIG_FILE).exists() or not checkpoint.exists(run_dir / CHECKPOINT_DIR):
        raise ConfigError(f"{run_dir}: not a behaviour run with a checkpoint")
    algo = json.loads((run_dir / CONFIG_FILE).read_text()).get("algo")
    if algo not in ONLINE_ALGOS:
        raise ConfigError(f"{run_dir}: a {algo} run; only {', '.join(ONLINE_ALGOS)} runs pack")
    meta = json.loads((run_dir / CHECKPOINT_DIR / checkpoint.META_FILE).read_text())
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: exists and is not empty")
    step = meta["step"]
    with np.load(run_dir / BUFFER_FILE) as saved:
        buffer = ReplayBuffer(step, saved["obs"].shape[1], saved["act"].shape[1])
    buffer.load(run_dir / BUFFER_FILE, step)
    (out / CHECKPOINT_DIR).mkdir(parents=True)
    for name in (CONFIG_FILE, SNAPSHOT_LOG, EPISODE_LOG, *CHECKPOINT_FILES):
        (out / name).write_bytes((run_dir / name).read_bytes())
    for log in (SNAPSHOT_LOG, EPISODE_LOG):  # up to the checkpoint, as resuming keeps them
        truncate_jsonl(out / log, step)
    kept = []
    for s in sorted(set(snapshot_steps)):
        source = snapshot_path(run_dir, s)
        if not source.exists():
            raise ConfigError(f"{source}: no snapshot at step {s}")
        snapshot_path(out, s).parent.mkdir(parents=True, exist_ok=True)
        snapshot_path(out, s).write_bytes(source.read_bytes())
        kept.append(s)
    with atomic_path(out / ACTIONS_FILE) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, act=buffer.act, logp=buffer.logp, digest=buffer.digest())
    return {"step": step, "actions_bytes": (out / ACTIONS_FILE).stat().st_size, "snapshots": kept}


def _without_steps(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "steps"}


def open_run_dir(config: dict, out: Path, resume: bool) -> None:
    """Check `out` against the run to start or resume and write its config.json: a new run
    needs an empty directory; a resumed one the same configuration, only more steps."""
    config_path = out / CONFIG_FILE
    if resume and config_path.exists():
        saved = json.loads(config_path.read_text())
        if _without_steps(saved) != _without_steps(json.loads(json.dumps(config))):
            raise ConfigError(
                f"{config_path}: the run to resume has a different configuration "
                "(only --steps may change)"
            )
        if config["steps"] < saved["steps"]:
            raise ConfigError(
                f"{config_path}: cannot resume with fewer steps than {saved['steps']}"
            )
    elif resume:
        raise ConfigError(f"{out}: nothing to resume (no {CONFIG_FILE})")
    elif out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: run directory exists and is not empty; pass --resume")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(config_path, config)


def train_behavior(
    bc: BehaviorConfig, out: str | Path, resume: bool = False, progress: bool = True
) -> dict:
    """Train (or resume) one behaviour agent into run directory `out`."""
    bc.check()
    out = Path(out)
    open_run_dir(dataclasses.asdict(bc), out, resume)
    run = _OnlineRun(bc, out, progress)
    if resume:
        run.resume()
    return run.run()
