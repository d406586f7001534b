"""cpi: exact, fast tabular MDPs for Conservative Policy Iteration with resets.

Conventions are in DESIGN.md section 3: unnormalised values, normalised occupancy,
``P`` as CSR ``(S*A, S)``, policies ``(S, A)``.
"""
from .exact import (Evaluation, advantages, bellman_sweep, effective_horizon, evaluate, greedy,
                    occupancy, optimal, policy_advantage, policy_matrix, q_from_v, q_values,
                    value)
from .generators import combination_lock, garnet, lock_policy, thought_tree
from .mdp import TabularMDP, time_augment
from .sampling import Rollouts, rollout_returns, sample_from, sample_states

__all__ = [
    "TabularMDP", "time_augment", "garnet", "thought_tree", "combination_lock", "lock_policy",
    "value", "q_values", "q_from_v", "advantages", "occupancy", "evaluate", "Evaluation",
    "effective_horizon", "policy_advantage", "policy_matrix", "greedy", "bellman_sweep",
    "optimal", "sample_states", "rollout_returns", "sample_from", "Rollouts",
]
