"""Inverse RL, adversarial imitation and learning from observation (`apprentice irl`).

`common` (the config and result every algorithm shares), `envs` (tasks as SB3 envs, demos as
transitions, scoring), `tabular` (apprenticeship learning, MaxEnt IRL on gridworlds),
`adversarial` with `discriminators`, `reward_env` and `diagnostics` (GAIL, AIRL, GAIfO),
`bco` and `hybrid` (learning from observation, BC+RL), `cli` (the command). Modules are
imported on use: stable-baselines3 is an optional extra.
"""
