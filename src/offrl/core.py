"""Pieces every algorithm shares: the batch, sampling on device, optimizer steps, targets.

Everything here is pure and jit-able; nothing keeps state outside the pytrees it returns.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training.train_state import TrainState

from offrl.data.dataset import Dataset
from offrl.data.transforms import Transforms, block_rows

Metrics = dict[str, jnp.ndarray]


@flax.struct.dataclass
class Batch:
    """Transitions as the networks see them: obs normalized, actions in [-1, 1] (continuous)
    or int32 action indices (discrete)."""

    obs: jnp.ndarray  # (B, obs_dim)
    act: jnp.ndarray  # (B, act_dim) float in [-1, 1]; discrete: (B,) int32 in [0, n)
    rew: jnp.ndarray  # (B,)
    next_obs: jnp.ndarray  # (B, obs_dim)
    done: jnp.ndarray  # (B,) 1.0 where the transition ended in a terminal (no bootstrap)
    # Per-transition columns an algorithm asked for with `extra_columns(cfg, dataset, tf)`
    # (AWR's Monte-Carlo returns); sampled with the rest.
    extra: dict = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class Spec:
    """What `init` needs to know about the data: sizes and the fitted transforms."""

    obs_dim: int
    act_dim: int
    transforms: Transforms
    num_actions: int = 0  # n of a discrete action space (act_dim is then 1); 0: continuous

    @property
    def discrete(self) -> bool:
        return self.num_actions > 0


def to_device(dataset: Dataset, tf: Transforms, extra: dict | None = None) -> Batch:
    """The whole dataset, transformed once, as device arrays (a Batch of length N).
    Continuous actions are mapped to [-1, 1]; discrete ones stay indices, (N,) int32.
    Training samples from `to_device_transitions` instead, which holds the observations once."""
    return to_device_transitions(dataset, tf, extra).rows(jnp.arange(len(dataset)))


@flax.struct.dataclass
class Transitions:
    """The dataset on device with one copy of the observations (issue 20: next_observations
    is, within an episode, the next row's observation). Row i's next observation is
    `states[next_row[i]]`: row i + 1 where the data's next_observations[i] equals
    observations[i + 1] bit for bit, else one of the rows appended after the N observations
    (each episode's last next observation, or every row of data whose next observations are
    not the next rows). Sampled by `sample`, which returns a Batch."""

    states: jnp.ndarray  # (N + appended, obs_dim) normalized observations
    next_row: jnp.ndarray  # (N,) int32 index into states
    act: jnp.ndarray
    rew: jnp.ndarray
    done: jnp.ndarray
    extra: dict = dataclasses.field(default_factory=dict)

    def rows(self, idx: jnp.ndarray) -> Batch:
        return Batch(
            obs=self.states[idx],
            act=self.act[idx],
            rew=self.rew[idx],
            next_obs=self.states[self.next_row[idx]],
            done=self.done[idx],
            extra={k: v[idx] for k, v in self.extra.items()},
        )


def next_rows(dataset: Dataset, rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(next_row (N,) int32, appended (M,) int64): where each row's next observation lies in
    `Transitions.states`, and which rows' next observations are appended after the N
    observations. Compared in blocks of rows, so no full-size temporary is made."""
    obs, nxt, n = dataset.observations, dataset.next_observations, len(dataset)
    rows = block_rows(dataset.obs_dim, rows)
    same = np.zeros(n, bool)
    for start in range(0, n - 1, rows):
        stop = min(start + rows, n - 1)
        same[start:stop] = (nxt[start:stop] == obs[start + 1 : stop + 1]).all(axis=1)
    appended = np.flatnonzero(~same)
    next_row = np.arange(1, n + 1, dtype=np.int64)
    next_row[appended] = n + np.arange(appended.size)
    return next_row.astype(np.int32), appended


@functools.partial(jax.jit, donate_argnums=0)
def _write_rows(buffer, tf: Transforms, block, start) -> jnp.ndarray:
    """buffer[start : start + len(block)] = tf.obs(block), in place (the buffer is donated);
    compiled once per block shape, whatever the transforms."""
    return jax.lax.dynamic_update_slice(buffer, tf.obs(block), (start, 0))


def _device_states(tf: Transforms, sources, total: int, obs_dim: int, rows: int | None = None):
    """(total, obs_dim) normalized observations on device, written block by block into one
    donated buffer: its only full-size copy (an asarray of the whole array, then tf.obs of
    it, would make two). `sources`: host arrays whose rows fill it in order."""
    buffer, at = jnp.zeros((total, obs_dim), jnp.float32), 0
    rows = block_rows(obs_dim, rows)
    for source in sources:
        for start in range(0, len(source), rows):
            block = jnp.asarray(source[start : start + rows], jnp.float32)
            # Waited for, so that one block at a time is on its way (asynchronous dispatch
            # let dozens pile up: +0.13 GiB for a 250k x 600 dataset).
            buffer = _write_rows(buffer, tf, block, jnp.int32(at)).block_until_ready()
            at += block.shape[0]
    return buffer


@dataclasses.dataclass(frozen=True)
class HostTransitions:
    """What the device copy of a dataset is made from, on the host, with one copy of the
    observations: the next observations reduced to the rows that are not the next row's
    (`next_rows`). Holding this instead of the Dataset lets the Dataset's next_observations
    go before the device copy is made (issue 20: peak memory)."""

    observations: np.ndarray  # (N, obs_dim)
    next_row: np.ndarray  # (N,) int32 index into the device states
    appended: np.ndarray | _Rows  # (M, obs_dim): the next observations after the N rows
    actions: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    discrete: bool

    @classmethod
    def of(cls, dataset: Dataset) -> HostTransitions:
        next_row, appended = next_rows(dataset)
        # Copied out when few (each episode's last), else read from the full array when the
        # device copy is made (data whose next observations are seldom the next row's).
        few = appended.size <= len(dataset) // 8
        nxt = dataset.next_observations
        return cls(
            observations=dataset.observations,
            next_row=next_row,
            appended=nxt[appended] if few else _Rows(nxt, appended),
            actions=dataset.actions,
            rewards=dataset.rewards,
            terminals=dataset.terminals,
            discrete=dataset.discrete,
        )

    def to_device(self, tf: Transforms, extra: dict | None = None) -> Transitions:
        """Transformed once, on device (see Transitions)."""
        if self.discrete:
            act = jnp.asarray(self.actions[:, 0], jnp.int32)
        else:
            act = jnp.clip(tf.action_to_unit(jnp.asarray(self.actions, jnp.float32)), -1.0, 1.0)
        n, obs_dim = self.observations.shape
        return Transitions(
            states=_device_states(
                tf, (self.observations, self.appended), n + len(self.appended), obs_dim
            ),
            next_row=jnp.asarray(self.next_row),
            act=act,
            rew=tf.reward(jnp.asarray(self.rewards, jnp.float32)),
            # Timeouts are not terminals: the target still bootstraps through them.
            done=jnp.asarray(self.terminals, jnp.float32),
            extra={k: jnp.asarray(v, jnp.float32) for k, v in (extra or {}).items()},
        )


class _Rows:
    """Some rows of a host array, sliced like one (fancy indexing a block at a time)."""

    def __init__(self, array: np.ndarray, index: np.ndarray):
        self.array, self.index = array, index

    def __len__(self) -> int:
        return self.index.size

    def __getitem__(self, part: slice) -> np.ndarray:
        return self.array[self.index[part]]


def to_device_transitions(dataset: Dataset, tf: Transforms, extra: dict | None = None):
    """The whole dataset, transformed once, on device as Transitions (see there)."""
    return HostTransitions.of(dataset).to_device(tf, extra)


def mc_returns(dataset: Dataset, tf: Transforms, discount: float) -> np.ndarray:
    """The discounted return-to-go of every transition, Σ_k γ^k r_{t+k} to the end of its
    episode, from the TRANSFORMED rewards tf.reward(r) the batches carry (so it shares their
    units). Timeouts end the sum (no bootstrap). AWR's and Cal-QL's Monte-Carlo column."""
    rewards = np.asarray(tf.reward(jnp.asarray(dataset.rewards, jnp.float32)), np.float64)
    return dataset.replace(rewards=rewards).returns_to_go(discount)


def algorithm_data(algo, cfg, dataset: Dataset, tf: Transforms) -> Transitions | Trajectories:
    """The device data the algorithm's updates sample from: `to_device_transitions` plus the extra
    columns it declares (optional hook `extra_columns(cfg, dataset, tf) -> dict[str,
    np.ndarray]`, one row per transition), or, for `batch_kind = "trajectories"`,
    `to_device_trajectories`."""
    return take_algorithm_data(algo, cfg, [dataset], tf)


def take_algorithm_data(algo, cfg, host: list[Dataset], tf: Transforms):
    """`algorithm_data` of the one dataset in `host`, which it empties. Once the dataset is
    reduced to HostTransitions its last reference goes (when the caller holds no other), so
    the next observations it alone held are freed before the device copy is made."""
    dataset = host.pop()
    if batch_kind(algo) == "trajectories":
        return to_device_trajectories(dataset, tf)
    columns = getattr(algo, "extra_columns", None)
    extra = columns(cfg, dataset, tf) if columns else None
    compact = HostTransitions.of(dataset)
    del dataset
    return compact.to_device(tf, extra)


BATCH_KINDS = ("transitions", "trajectories")


def batch_kind(algo) -> str:
    """ "transitions" (a Batch of single transitions) or "trajectories" (a Window of
    sub-trajectories of cfg.context steps) : what the algorithm's `update` receives."""
    kind = getattr(algo, "batch_kind", "transitions")
    if kind not in BATCH_KINDS:
        raise ValueError(f"{algo.__name__}.batch_kind must be one of {BATCH_KINDS}, got {kind!r}")
    return kind


def training_rows(algo, cfg, dataset: Dataset) -> tuple[Dataset, dict | None]:
    """The part of `dataset` the algorithm trains on, and what it says about its choice:
    optional hook `select_rows(cfg, dataset) -> (sorted row indices, info)` (filtered BC's
    best episodes, BAIL's best actions); without one, all of it and None. The transforms
    are then fitted to the selected rows, the data the networks see."""
    select = getattr(algo, "select_rows", None)
    if select is None:
        return dataset, None
    rows, info = select(cfg, dataset)
    if rows.size == 0:
        raise ValueError(f"{algo.__name__.rsplit('.', 1)[-1]} selected no transitions")
    return dataset.subset(rows), {"rows": int(rows.size), "of": len(dataset), **info}


# --------------------------------------------------------------------------- trajectories


@flax.struct.dataclass
class Trajectories:
    """The dataset on device for sequence models: rows in episode order, with each row's
    step within its episode and the index of its episode's last row. Flat, not padded per
    episode: a window is gathered from consecutive rows and masked past its episode's end,
    so memory stays one row per transition however unequal the episodes."""

    obs: jnp.ndarray  # (N, obs_dim) normalized
    act: jnp.ndarray  # (N, act_dim) in [-1, 1]; discrete: (N,) int32
    rew: jnp.ndarray  # (N,) transformed rewards
    rtg: jnp.ndarray  # (N,) undiscounted return-to-go Σ_{k>=t} r_k of the transformed rewards
    timestep: jnp.ndarray  # (N,) int32: t within the episode
    last: jnp.ndarray  # (N,) int32: the index of the row's episode's last row


@flax.struct.dataclass
class Window:
    """B sub-trajectories of K steps, right-padded: step k of row b is real where mask[b, k]
    is 1; padding (zeros) only follows real steps, so a causal model's outputs at real steps
    never see it."""

    obs: jnp.ndarray  # (B, K, obs_dim)
    act: jnp.ndarray  # (B, K, act_dim); discrete: (B, K) int32
    rew: jnp.ndarray  # (B, K)
    rtg: jnp.ndarray  # (B, K)
    timestep: jnp.ndarray  # (B, K) int32
    mask: jnp.ndarray  # (B, K) float32


def to_device_trajectories(dataset: Dataset, tf: Transforms) -> Trajectories:
    rows = to_device_transitions(dataset, tf)
    starts, ends = dataset.episode_starts, dataset.episode_ends
    lengths = ends - starts + 1
    episode = np.repeat(np.arange(lengths.size), lengths)
    timestep = np.arange(len(dataset)) - starts[episode]
    scaled = dataset.replace(rewards=np.asarray(tf.reward(jnp.asarray(dataset.rewards))))
    return Trajectories(
        obs=rows.states[: len(dataset)],
        act=rows.act,
        rew=rows.rew,
        rtg=jnp.asarray(scaled.returns_to_go(1.0), jnp.float32),
        timestep=jnp.asarray(timestep, jnp.int32),
        last=jnp.asarray(ends[episode], jnp.int32),
    )


def sample_windows(data: Trajectories, key: jax.Array, batch_size: int, context: int) -> Window:
    """B windows of `context` steps, each starting at a uniformly drawn row (so an episode
    is drawn in proportion to its length, then a start uniformly within it, as CORL's DT
    samples) and cut at its episode's end."""
    start = jax.random.randint(key, (batch_size,), 0, data.rew.shape[0])
    rows = start[:, None] + jnp.arange(context)[None, :]
    real = rows <= data.last[start][:, None]
    rows = jnp.where(real, rows, data.last[start][:, None])

    def gather(x):
        out = x[rows]
        keep = real.reshape(real.shape + (1,) * (out.ndim - 2))
        return jnp.where(keep, out, jnp.zeros_like(out))

    return Window(
        obs=gather(data.obs),
        act=gather(data.act),
        rew=gather(data.rew),
        rtg=gather(data.rtg),
        timestep=gather(data.timestep),
        mask=real.astype(jnp.float32),
    )


def spec_from_dataset(dataset: Dataset, tf: Transforms) -> Spec:
    return Spec(dataset.obs_dim, dataset.act_dim, tf, num_actions=dataset.num_actions)


@flax.struct.dataclass
class RingBuffer:
    """Transitions kept on device in a fixed-size ring (the model rollouts of model-based
    methods): `rows` holds `capacity` rows as a Batch; `size` of them are filled and the next
    write starts at `ptr`. Part of an algorithm's State, so it lives inside the compiled
    chunk and is checkpointed with the rest."""

    rows: Batch
    size: jnp.ndarray  # () int32
    ptr: jnp.ndarray  # () int32

    @classmethod
    def create(cls, capacity: int, obs_dim: int, act_dim: int) -> RingBuffer:
        z = lambda *shape: jnp.zeros((capacity, *shape), jnp.float32)  # noqa: E731
        rows = Batch(obs=z(obs_dim), act=z(act_dim), rew=z(), next_obs=z(obs_dim), done=z())
        return cls(rows=rows, size=jnp.zeros((), jnp.int32), ptr=jnp.zeros((), jnp.int32))

    @property
    def capacity(self) -> int:
        return self.rows.rew.shape[0]

    def add(self, rows: Batch, valid: jnp.ndarray) -> RingBuffer:
        """Write the rows where `valid` (bool (n,)), in order, after the last write; when the
        ring is full the oldest rows go. Invalid rows are dropped, not written."""
        order = jnp.argsort(~valid, stable=True)  # valid rows first, in their order
        count = jnp.sum(valid).astype(jnp.int32)
        n, cap = valid.shape[0], self.capacity
        slot = jnp.where(jnp.arange(n) < count, (self.ptr + jnp.arange(n)) % cap, cap)
        write = lambda buf, new: buf.at[slot].set(new[order], mode="drop")  # noqa: E731
        return self.replace(
            rows=jax.tree_util.tree_map(write, self.rows, rows),
            size=jnp.minimum(self.size + count, cap),
            ptr=(self.ptr + count) % cap,
        )

    def sample(self, key: jax.Array, n: int) -> Batch:
        """n rows uniformly with replacement among the filled ones (row 0 while empty)."""
        idx = jax.random.randint(key, (n,), 0, jnp.maximum(self.size, 1))
        return jax.tree_util.tree_map(lambda x: x[idx], self.rows)


def sample(data: Batch | Transitions, key: jax.Array, batch_size: int) -> Batch:
    """Uniform minibatch with replacement, inside the compiled step."""
    n = data.rew.shape[0]
    idx = jax.random.randint(key, (batch_size,), 0, n)
    if isinstance(data, Transitions):
        return data.rows(idx)
    return jax.tree_util.tree_map(lambda x: x[idx], data)


@functools.cache
def adam(lr: float, cosine_decay_steps: int = 0, eps: float = 1e-8) -> optax.GradientTransformation:
    """Adam, optionally with a cosine-decayed rate; `eps` is Adam's ε (DQN's settings raise it).
    Cached: states made with the same settings share one optimizer object, so their pytree
    structures compare equal and a compiled update is reused instead of compiled again."""
    if cosine_decay_steps > 0:
        return optax.adam(optax.cosine_decay_schedule(lr, cosine_decay_steps), eps=eps)
    return optax.adam(lr, eps=eps)


@functools.cache
def _shared_module(module) -> tuple[Any, Callable]:
    """The first instance of each distinct module (flax modules compare by their fields), and
    its compiled `init`. A bound method compares its instance by identity, so two equal
    modules' `apply` differ, and so would the pytree structures of the states holding them:
    every new state (another seed, a test, a resume) would compile its update again."""
    return module, jax.jit(module.init)  # one compile instead of op-by-op


def make_model(module, key: jax.Array, sample_inputs: tuple, tx: optax.GradientTransformation):
    """A flax TrainState (params + optimizer state) for `module`."""
    module, init = _shared_module(module)
    return TrainState.create(apply_fn=module.apply, params=init(key, *sample_inputs), tx=tx)


def gradient_step(
    model: TrainState, loss_fn: Callable[..., tuple[jnp.ndarray, Metrics]], *args: Any
) -> tuple[TrainState, Metrics]:
    """One optimizer step on `loss_fn(params, *args) -> (loss, metrics)`."""
    grads, metrics = jax.grad(loss_fn, has_aux=True)(model.params, *args)
    return model.apply_gradients(grads=grads), metrics


def blocked_gradient_step(
    model: TrainState,
    loss_fn: Callable[..., tuple[jnp.ndarray, Metrics]],
    rows: Any,
    blocks: int,
    *args: Any,
) -> tuple[TrainState, Metrics]:
    """One optimizer step on the mean over `blocks` equal blocks of `rows` (a pytree of arrays
    sharing their leading axis) of `loss_fn(params, rows_block, *args) -> (loss, metrics)`;
    the metrics are averaged the same way. For a loss that is a mean over the rows this is
    its gradient, up to rounding, taken a block at a time (lax.map) so that each block's
    activations stay in cache: CQL's critics on 7,936 rows (docs/algos/cql.md)."""
    split = jax.tree_util.tree_map(
        lambda x: x.reshape(blocks, x.shape[0] // blocks, *x.shape[1:]), rows
    )
    grads, metrics = jax.lax.map(
        lambda part: jax.grad(loss_fn, has_aux=True)(model.params, part, *args), split
    )
    grads, metrics = jax.tree_util.tree_map(lambda x: jnp.mean(x, axis=0), (grads, metrics))
    return model.apply_gradients(grads=grads), metrics


# --------------------------------------------------------------------------- target networks


def polyak(target: Any, online: Any, tau: float) -> Any:
    """target <- tau * online + (1 - tau) * target."""
    return optax.incremental_update(online, target, tau)


def check_target_update(period: int, tau: float = 1.0) -> None:
    """The settings of `update_target`, named as the configs name them."""
    if period < 1:
        raise ValueError(f"target_update_period must be >= 1, got {period}")
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"target_tau must be in (0, 1], got {tau}")


def check_huber_delta(delta: float) -> None:
    """κ of a (quantile) Huber TD loss: the loss is quadratic inside |u| <= κ, linear outside."""
    if delta <= 0:
        raise ValueError(f"huber_delta must be > 0, got {delta}")


def updates_in_agent_steps(agent_steps: int, update_period: int) -> int:
    """Gradient updates an agent makes in `agent_steps` environment steps when it trains once
    every `update_period` steps: Dopamine's (batch_rl's) `target_update_period = 8000` at
    `update_period = 4` is a target copy every 2000 updates."""
    if agent_steps % update_period:
        raise ValueError(f"{agent_steps} agent steps are not a whole number of updates")
    return agent_steps // update_period


def update_target(
    online: Any, target: Any, step: jnp.ndarray, period: int, tau: float = 1.0
) -> Any:
    """Every `period` updates (`step` counted after the update): target <- τ online +
    (1 - τ) target; unchanged in between. τ = 1 is DQN's hard copy every `period` updates;
    period 1 with a small τ is Polyak averaging. `tau` is a Python float (a config field)."""
    moved = online if tau == 1.0 else polyak(target, online, tau)  # a copy: no arithmetic
    return optax.periodic_update(moved, target, step, period)


# --------------------------------------------------------------------------- TD losses, actions


def td_target(batch: Batch, next_value: jnp.ndarray, discount: float) -> jnp.ndarray:
    """r + gamma * (1 - terminal) * V(s'); timeouts bootstrap because done holds terminals only.
    next_value is (B,), or (B, ...) with trailing axes (quantiles, heads) over which r and
    done, both (B,), are broadcast."""
    trailing = (1,) * (jnp.ndim(next_value) - 1)
    rew = batch.rew.reshape(batch.rew.shape + trailing)
    done = batch.done.reshape(batch.done.shape + trailing)
    return rew + discount * (1.0 - done) * next_value


def huber_td_loss(
    q_taken: jnp.ndarray, target: jnp.ndarray, delta: float
) -> tuple[jnp.ndarray, Metrics]:
    """E[huber_δ(Q(s, a) - y)] with the target y held constant, and the metrics q_loss, q_mean,
    target_mean. q_taken and target share one shape: (B,), or (B, K) where each of K heads
    regresses onto its own target (the discrete Q-learners' TD loss)."""
    target = jax.lax.stop_gradient(target)
    loss = jnp.mean(optax.huber_loss(q_taken, target, delta=delta))
    return loss, {"q_loss": loss, "q_mean": q_taken.mean(), "target_mean": target.mean()}


def soft_clipped_min(q: jnp.ndarray, lam: float) -> jnp.ndarray:
    """BCQ's soft clipped double-Q over the ensemble axis 0: λ min_i Q_i + (1 - λ) max_i Q_i.
    λ = 1 is TD3's clipped double-Q; BCQ and BEAR use λ = 0.75."""
    return lam * q.min(axis=0) + (1.0 - lam) * q.max(axis=0)


def repeat_states(obs: jnp.ndarray, n: int) -> jnp.ndarray:
    """(B, d) -> (B, n, d): n copies of every row, for n sampled actions per state."""
    return jnp.broadcast_to(obs[:, None], (obs.shape[0], n, obs.shape[-1]))


def best_candidate(q: jnp.ndarray, candidates: jnp.ndarray) -> jnp.ndarray:
    """The candidate action of highest Q per state: q (B, n), candidates (B, n, |A|) -> (B, |A|).
    BCQ and BEAR act this way."""
    best = jnp.argmax(q, axis=-1)
    return jnp.take_along_axis(candidates, best[:, None, None], axis=1)[:, 0]


def action_values(q: jnp.ndarray, act: jnp.ndarray) -> jnp.ndarray:
    """Q(s, a) of the given actions: q (B, n, ...) with the actions on axis 1 (trailing axes,
    e.g. quantiles or heads, are kept), act (B,) int -> (B, ...)."""
    index = act.reshape(act.shape + (1,) * (q.ndim - 1))
    return jnp.take_along_axis(q, index, axis=1)[:, 0]


def greedy(q: jnp.ndarray) -> jnp.ndarray:
    """argmax_a Q(s, a) per state: q (B, n) -> (B,) int32 (ties: the lowest index)."""
    return jnp.argmax(q, axis=-1).astype(jnp.int32)


def epsilon_greedy(key: jax.Array, q: jnp.ndarray, epsilon: float) -> jnp.ndarray:
    """With probability ε a uniformly random action, else the greedy one: q (B, n) -> (B,)
    int32. The random action may itself be the greedy one (DQN's convention)."""
    k_explore, k_action = jax.random.split(key)
    b, n = q.shape
    explore = jax.random.uniform(k_explore, (b,)) < epsilon
    return jnp.where(explore, jax.random.randint(k_action, (b,), 0, n), greedy(q))


def exp_weights(scaled_adv: jnp.ndarray, max_weight: float) -> jnp.ndarray:
    """min(exp(x), max_weight) held constant (a stop-gradient), x the advantage already
    divided by the temperature: the weights of AWR, AWAC and CRR (x = A / β) and of IQL's
    policy extraction (x = β A, β an inverse temperature there)."""
    return jax.lax.stop_gradient(jnp.minimum(jnp.exp(scaled_adv), max_weight))


# --------------------------------------------------------------------------- update chunks


def make_update_chunk(algo, cfg, num_steps: int):
    """Compile `num_steps` updates into one call: sampling and updates fused by lax.scan.

    The key of step t is fold_in(base_key, t), so a run's randomness does not depend on how
    it is cut into chunks, and a resumed run replays exactly the steps it would have made.
    Returns chunk(state, data, base_key) -> (state, (means, reported), finite): per metric its
    mean over the steps that computed it and whether any did; whether every parameter is
    finite. `chunk_metrics` turns the pair into a plain dict on the host.
    """

    return jax.jit(_chunk_body(algo, cfg, num_steps))


def make_seed_group_chunk(algo, cfg, num_steps: int):
    """`make_update_chunk` for S seeds in one compiled program: state and base key carry a
    leading seed axis, the dataset is shared. Every output gains the seed axis."""
    return jax.jit(jax.vmap(_chunk_body(algo, cfg, num_steps), in_axes=(0, None, 0)))


def stack_states(states: list[Any]) -> Any:
    """S states of one algorithm as one state with a leading seed axis. The first state's
    structure serves all: each state's apply functions are methods bound to its own (equal)
    module, which pytree comparison would call different."""
    treedef = jax.tree_util.tree_structure(states[0])
    leaves = [jax.tree_util.tree_leaves(s) for s in states]
    return jax.tree_util.tree_unflatten(treedef, [jnp.stack(xs) for xs in zip(*leaves)])


def unstack_state(stacked: Any, index: int) -> Any:
    """Seed `index`'s state out of a stacked one."""
    return jax.tree_util.tree_map(lambda x: x[index], stacked)


def minibatch_sampler(algo, cfg) -> Callable[[Any, jax.Array], Batch | Window]:
    """(device data, key) -> the minibatch one update of `algo` takes: cfg.batch_size
    transitions, or cfg.batch_size windows of cfg.context steps."""
    if batch_kind(algo) == "trajectories":
        return lambda data, key: sample_windows(data, key, cfg.batch_size, cfg.context)
    return lambda data, key: sample(data, key, cfg.batch_size)


def _chunk_body(algo, cfg, num_steps: int):
    draw = minibatch_sampler(algo, cfg)

    def chunk(state, data: Batch | Trajectories, base_key: jax.Array):
        def body(state, _):
            key = jax.random.fold_in(base_key, state.step)
            k_sample, k_update = jax.random.split(key)
            return algo.update(cfg, state, draw(data, k_sample), k_update)

        # The dataset is closed over, not carried: a carried array may be copied every step.
        state, metrics = jax.lax.scan(body, state, None, num_steps)
        # Metrics a step did not compute (e.g. TD3's actor on critic-only steps) are NaN there;
        # a metric no step of the chunk computed is dropped rather than reported as NaN.
        reported = {k: jnp.any(~jnp.isnan(v)) for k, v in metrics.items()}
        means = {k: jnp.nanmean(v) for k, v in metrics.items()}
        return state, (means, reported), all_finite(state)

    return chunk


def chunk_metrics(metrics: tuple[Metrics, Metrics]) -> dict[str, float]:
    """Host-side metrics of one chunk, without those no step computed."""
    means, reported = jax.device_get(metrics)
    return {k: float(v) for k, v in means.items() if reported[k]}


def all_finite(tree: Any) -> jnp.ndarray:
    """True when every floating leaf of `tree` is finite (the divergence guard's test)."""
    leaves = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree_util.tree_leaves(tree)
        if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def template_spec(obs_dim: int, act_dim: int, num_actions: int = 0) -> Spec:
    """A spec of the right sizes whose transforms a checkpoint overwrites on load."""
    z = lambda n: np.zeros(n, np.float32)  # noqa: E731
    o = lambda n: np.ones(n, np.float32)  # noqa: E731
    tf = Transforms(z(obs_dim), o(obs_dim), -o(act_dim), o(act_dim), np.float32(1), np.float32(0))
    return Spec(obs_dim, act_dim, tf, num_actions)
