"""Environments: reference returns (registry), rollouts, offrl's gymnasium registrations.

Importing this package registers the MinAtar games (offrl.envs.minatar) with gymnasium, so
`gym.make("offrl/MinAtarBreakout-v0")` works wherever offrl.envs is imported (rollouts,
evaluation, dataset recipes).
"""

from offrl.envs.minatar import register_envs

register_envs()
