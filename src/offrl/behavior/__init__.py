"""Behaviour agents: online SAC / TD3 / DDPG in gymnasium, whose snapshots make the datasets.

`train_behavior` (offrl.behavior.online) trains one agent with policy snapshots and resumable
checkpoints; `publish` (offrl.recipes.publish) turns a finished run into the small committed
policy files and manifest entries the dataset recipes read.
"""

from offrl.behavior.online import BehaviorConfig, train_behavior

__all__ = ["BehaviorConfig", "train_behavior"]
