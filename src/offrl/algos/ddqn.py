"""Double DQN: `dqn` with `double=True` by default (van Hasselt, Guez & Silver, AAAI 2016).

The target's next action is chosen by the online network and valued by the target network,
y = r + γ (1 - d) Q'(s', argmax_a' Q(s', a')), which removes the max operator's upward bias
of y = r + γ (1 - d) max_a' Q'(s', a'). Everything else (loss, defaults, update order, acting)
is DQN's: see offrl.algos.dqn and docs/algos/dqn.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from offrl.algos import dqn
from offrl.algos.dqn import State, act, init, next_state_value, q_loss, update

__all__ = ["Config", "State", "act", "init", "next_state_value", "q_loss", "update"]

action_kind = dqn.action_kind


@dataclass(frozen=True)
class Config(dqn.Config):
    double: bool = True  # the Double DQN target (set False and this is dqn)
