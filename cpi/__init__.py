"""cpi: exact, fast tabular MDPs for Conservative Policy Iteration with resets.

Conventions (``docs/cpi.md``): unnormalised values, normalised occupancy, ``P`` as CSR
``(S*A, S)`` with row ``s*A + a``, policies ``(S, A)`` row-stochastic.
"""
# MDPs and their generators
from .generators import bernoulli_leaves, combination_lock, garnet, gated_trap, lock_policy, thought_tree
from .horizon import time_augment
from .mdp import TabularMDP

# Exact values, occupancies and control
from .exact import (Evaluation, advantages, bellman_sweep, effective_horizon, evaluate, greedy,
                    occupancy, optimal, policy_advantage, policy_matrix, q_from_v, q_values,
                    value)

# Monte-Carlo access (every environment step counted)
from .sampling import Rollouts, rollout_returns, sample_from, sample_states

# Conservative Policy Iteration with reset distributions; its bounds in cpi.bounds
from . import bounds
from .algorithms import (CPIConfig, CPIResult, CPIStep, advantage_bound, mc_advantage,
                         mc_q_estimates, run_cpi)
from .resets import (Noisy, NoImprovableState, Oracle, RandomReset, ResetDistribution, Start,
                     improvable_states, make_reset, reach_probability)

# The reset theorem's quantities: per-iteration sample sizes, exact reference steps, censored slopes
from . import slopes
from .complexity import (ReferenceStep, SampleSize, one_step_trials, predicted_samples,
                         reference_step, return_variance, samples_per_iteration)

# Policy gradient and TD(0); their bounds in cpi.pg_bounds
from . import pg_bounds
from .pg import (PGConfig, PGTrace, direct_gradient, natural_pg, policy_iteration, projected_pg,
                 run_pg, soft_policy_iteration, softmax_gradient, softmax_pg)
from .td import (MRP, TDProblem, make_mrp, mean_path_td, one_step_improvement, random_mrp,
                 sampled_td, td_problem, td_q_estimate)

# Iterative PPO on two-level conversation MDPs; its bounds in cpi.multiturn_bounds
from . import multiturn_bounds
from .ippo import IPPOConfig, IPPOResult, iterative_ppo, reinforce, token_policy_gradient
from .multiturn import TwoLevelMDP, single_turn_maximiser, single_turn_mdp, two_level_mdp
from .multiturn_fit import Conversations, fit_q_mc, fit_q_td, log_conversations
from .multiturn_generators import conversation_mdp, funnel_conversation

__all__ = [
    # MDPs and their generators
    "TabularMDP", "time_augment", "garnet", "thought_tree", "combination_lock", "lock_policy",
    "gated_trap", "bernoulli_leaves",
    # exact values, occupancies and control
    "value", "q_values", "q_from_v", "advantages", "occupancy", "evaluate", "Evaluation",
    "effective_horizon", "policy_advantage", "policy_matrix", "greedy", "bellman_sweep",
    "optimal",
    # Monte-Carlo access
    "sample_states", "rollout_returns", "sample_from", "Rollouts",
    # CPI with reset distributions
    "bounds", "CPIConfig", "CPIResult", "CPIStep", "run_cpi", "advantage_bound", "mc_advantage",
    "mc_q_estimates", "ResetDistribution", "Start", "RandomReset", "Oracle", "Noisy",
    "NoImprovableState", "make_reset", "improvable_states", "reach_probability",
    # the reset theorem's quantities
    "slopes", "ReferenceStep", "SampleSize", "reference_step", "return_variance", "predicted_samples",
    "one_step_trials", "samples_per_iteration",
    # policy gradient and TD(0)
    "pg_bounds", "PGConfig", "PGTrace", "run_pg", "projected_pg", "softmax_pg", "natural_pg",
    "soft_policy_iteration", "policy_iteration", "direct_gradient", "softmax_gradient",
    "MRP", "TDProblem", "make_mrp", "random_mrp", "td_problem", "mean_path_td", "sampled_td",
    "td_q_estimate", "one_step_improvement",
    # Iterative PPO
    "multiturn_bounds", "TwoLevelMDP", "two_level_mdp", "conversation_mdp", "funnel_conversation",
    "single_turn_mdp", "single_turn_maximiser", "Conversations", "log_conversations", "fit_q_mc",
    "fit_q_td", "IPPOConfig", "IPPOResult", "iterative_ppo", "token_policy_gradient", "reinforce",
]
