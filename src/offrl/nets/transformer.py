"""A GPT-style causal transformer and the Decision Transformer built on it.

`CausalTransformer` is a stack of pre-LayerNorm blocks (as minGPT and CORL's DT):
    x <- x + Dropout(Attention(LN(x)))            causal self-attention, dropout on weights
    x <- x + Dropout(W₂ GELU(W₁ LN(x)))           MLP of width 4·dim
followed by a final LayerNorm. Token i attends to tokens j <= i only, so what follows a
token (padding included) never changes its output.

`DecisionTransformer` (Chen et al. 2021) embeds a window of K steps as 3K tokens
(R̂_0, s_0, a_0, R̂_1, s_1, a_1, ...): one linear embedding per modality plus a learned
timestep embedding shared by the three tokens of a step, then LayerNorm and dropout, the
causal transformer, and a tanh action head on the hidden state of every state token. The
prediction at s_t sees R̂_≤t, s_≤t and a_<t, never a_t.

Initialization as CORL's DT: linear and embedding weights N(0, 0.02²), biases 0, LayerNorm
(1, 0); the attention's query/key/value kernels as PyTorch's nn.MultiheadAttention
(Xavier-uniform over the fused 3·dim × dim projection), its output kernel N(0, 0.02²).
LayerNorm ε = 1e-5 and the exact (erf) GELU, PyTorch's defaults.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

LN_EPS = 1e-5  # PyTorch's LayerNorm ε (flax's default is 1e-6)
normal_init = nn.initializers.normal(stddev=0.02)


def fused_qkv_init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
    """PyTorch's Xavier-uniform init of the fused (3·dim, dim) in-projection of
    nn.MultiheadAttention, for one of its three (dim, dim) parts: U(±√(6 / (dim + 3·dim)))."""
    fan_in = shape[0]
    bound = math.sqrt(6.0 / (fan_in + 3 * fan_in))
    return jax.random.uniform(key, shape, dtype, -bound, bound)


class Block(nn.Module):
    """One pre-LayerNorm transformer block over (B, T, dim) with a (.., T, T) attention mask."""

    dim: int
    num_heads: int
    attention_dropout: float
    residual_dropout: float

    @nn.compact
    def __call__(self, x: jnp.ndarray, mask: jnp.ndarray, deterministic: bool) -> jnp.ndarray:
        h = nn.LayerNorm(epsilon=LN_EPS)(x)
        h = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads,
            qkv_features=self.dim,
            out_features=self.dim,
            dropout_rate=self.attention_dropout,
            broadcast_dropout=False,  # independent masks per example, as PyTorch's
            kernel_init=fused_qkv_init,
            out_kernel_init=normal_init,
        )(h, h, mask=mask, deterministic=deterministic)
        x = x + nn.Dropout(self.residual_dropout)(h, deterministic=deterministic)
        h = nn.LayerNorm(epsilon=LN_EPS)(x)
        h = nn.Dense(4 * self.dim, kernel_init=normal_init)(h)
        h = nn.gelu(h, approximate=False)
        h = nn.Dense(self.dim, kernel_init=normal_init)(h)
        return x + nn.Dropout(self.residual_dropout)(h, deterministic=deterministic)


class CausalTransformer(nn.Module):
    """`num_layers` causal blocks and a final LayerNorm: (B, T, dim) -> (B, T, dim)."""

    dim: int
    num_layers: int
    num_heads: int = 1
    attention_dropout: float = 0.0
    residual_dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jnp.ndarray, deterministic: bool = True) -> jnp.ndarray:
        mask = nn.make_causal_mask(jnp.ones(x.shape[:2], jnp.int32))  # (B, 1, T, T)
        for _ in range(self.num_layers):
            x = Block(self.dim, self.num_heads, self.attention_dropout, self.residual_dropout)(
                x, mask, deterministic
            )
        return nn.LayerNorm(epsilon=LN_EPS)(x)


class DecisionTransformer(nn.Module):
    """(obs (B, K, d), act (B, K, a), rtg (B, K), timestep (B, K) int) -> actions (B, K, a)
    in (-1, 1): the action predicted at each step's state token. Timesteps are clamped to
    [0, max_timestep - 1], the embedding table's rows."""

    act_dim: int
    dim: int = 128
    num_layers: int = 3
    num_heads: int = 1
    max_timestep: int = 1000
    embedding_dropout: float = 0.1
    attention_dropout: float = 0.1
    residual_dropout: float = 0.1

    @nn.compact
    def __call__(
        self,
        obs: jnp.ndarray,
        act: jnp.ndarray,
        rtg: jnp.ndarray,
        timestep: jnp.ndarray,
        deterministic: bool = True,
    ) -> jnp.ndarray:
        b, k = obs.shape[:2]
        steps = jnp.clip(timestep, 0, self.max_timestep - 1)
        embed = nn.Embed(self.max_timestep, self.dim, embedding_init=normal_init, name="time_embed")
        time = embed(steps)  # one embedding per step, shared by its three tokens
        dense = lambda name: nn.Dense(self.dim, kernel_init=normal_init, name=name)  # noqa: E731
        ret_tok = dense("rtg_embed")(rtg[..., None]) + time
        obs_tok = dense("obs_embed")(obs) + time
        act_tok = dense("act_embed")(act) + time
        # (B, K, 3, dim) -> (B, 3K, dim): R̂_0, s_0, a_0, R̂_1, s_1, a_1, ...
        x = jnp.stack([ret_tok, obs_tok, act_tok], axis=2).reshape(b, 3 * k, self.dim)
        x = nn.LayerNorm(epsilon=LN_EPS, name="embed_norm")(x)
        x = nn.Dropout(self.embedding_dropout)(x, deterministic=deterministic)
        x = CausalTransformer(
            self.dim,
            self.num_layers,
            self.num_heads,
            self.attention_dropout,
            self.residual_dropout,
            name="transformer",
        )(x, deterministic)
        head = nn.Dense(self.act_dim, kernel_init=normal_init, name="action_head")
        return jnp.tanh(head(x[:, 1::3]))  # read off the hidden state of every s_t token
