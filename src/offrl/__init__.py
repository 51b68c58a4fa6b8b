"""offrl: offline reinforcement learning in JAX.

import offrl
data = offrl.load_dataset("pendulum-medium-expert")
summary = offrl.train("td3_bc", "pendulum-medium-expert", steps=20_000, out="runs/demo")
policy = offrl.load_policy("runs/demo"); action = policy(obs)
summary = offrl.dagger.dagger("pendulum", iterations=5, out="runs/dagger")
"""

from offrl import dagger
from offrl.data import Dataset
from offrl.policy import Policy, load_policy
from offrl.recipes import load_dataset
from offrl.training import train

__version__ = "0.1.0"
__all__ = ["Dataset", "Policy", "dagger", "load_dataset", "load_policy", "train", "__version__"]
