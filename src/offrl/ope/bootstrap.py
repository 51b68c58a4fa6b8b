"""Percentile bootstrap over episodes.

A resample draws n episodes with replacement from the n logged ones; it is represented by
its counts c (how often each episode was drawn), and every estimator is a function of the
counts (importance.py), so a resample never copies data. The interval is the
((1 - confidence) / 2, (1 + confidence) / 2) percentiles of B resampled estimates. Every
estimator of one `estimate` call uses the same resamples (the same key), so their intervals
are paired.

What it captures: the variance from which episodes were logged, with every fitted model
(FQE's critic, the behaviour model) held fixed. What it does not: the fitting error of those
models, and their dependence on the same episodes; and nothing about bias (limited coverage
of π's actions by the data, a misspecified model). For FQE the interval is the bootstrap of
the initial-state values Q̂(s_0, π(s_0)) only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

Stat = Callable[[dict, jnp.ndarray], jnp.ndarray]


def resample_counts(key: jax.Array, num_episodes: int) -> jnp.ndarray:
    """How often each of n episodes is drawn in n draws with replacement: (n,) float32."""
    idx = jax.random.randint(key, (num_episodes,), 0, num_episodes)
    return jnp.zeros(num_episodes, jnp.float32).at[idx].add(1.0)


BLOCK = 64  # resamples evaluated together (vmap); blocks run one after another (lax.map)


@functools.partial(jax.jit, static_argnames=("stats", "num_resamples", "confidence"))
def summarize(
    stats: tuple[Stat, ...],
    comps: tuple[dict, ...],
    key: jax.Array,
    num_resamples: int,
    confidence: float,
) -> list[dict[str, jnp.ndarray]]:
    """For each stat(comp, counts): the point estimate stat(comp, 1), the percentile interval
    and the bootstrap standard error, over the same `num_resamples` resamples of the n
    episodes. One compiled program for every estimator; memory O(BLOCK · n)."""
    n = jax.tree_util.tree_leaves(comps[0])[0].shape[0]

    def all_stats(counts):
        return jnp.stack([stat(comp, counts) for stat, comp in zip(stats, comps)])

    blocks = -(-num_resamples // BLOCK)
    keys = jax.random.split(key, blocks * BLOCK).reshape(blocks, BLOCK)
    per_block = lambda ks: jax.vmap(lambda k: all_stats(resample_counts(k, n)))(ks)  # noqa: E731
    samples = jax.lax.map(per_block, keys).reshape(blocks * BLOCK, len(stats))[:num_resamples]
    point = all_stats(jnp.ones(n, jnp.float32))
    alpha = (1.0 - confidence) / 2.0
    lo, hi = jnp.quantile(samples, jnp.array([alpha, 1.0 - alpha]), axis=0)
    std = jnp.std(samples, axis=0)
    return [
        {"value": point[i], "lo": lo[i], "hi": hi[i], "std_error": std[i]}
        for i in range(len(stats))
    ]
