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

# Policy-gradient and TD(0) theory (issue 4); bounds in cpi.pg_bounds.
from . import pg_bounds  # noqa: E402
from .pg import (PGConfig, PGTrace, direct_gradient, natural_pg, policy_iteration,  # noqa: E402
                 projected_pg, run_pg, soft_policy_iteration, softmax_gradient, softmax_pg)
from .td import (MRP, TDProblem, make_mrp, mean_path_td, one_step_improvement,  # noqa: E402
                 random_mrp, sampled_td, td_problem, td_q_estimate)

__all__ += [
    "pg_bounds", "PGConfig", "PGTrace", "run_pg", "projected_pg", "softmax_pg", "natural_pg",
    "soft_policy_iteration", "policy_iteration", "direct_gradient", "softmax_gradient",
    "MRP", "TDProblem", "make_mrp", "random_mrp", "td_problem", "mean_path_td", "sampled_td",
    "td_q_estimate", "one_step_improvement",
]

# CPI with reset distributions and the improvement bounds (issue 3)
from . import bounds  # noqa: E402
from .algorithms import (CPIConfig, CPIResult, CPIStep, advantage_bound,  # noqa: E402
                         mc_advantage, mc_q_estimates)
from .algorithms import cpi as run_cpi  # noqa: E402
from .resets import (Noisy, NoImprovableState, Oracle, RandomReset,  # noqa: E402
                     ResetDistribution, Start, improvable_states, make_reset, reach_probability)

__all__ += [
    "bounds", "CPIConfig", "CPIResult", "CPIStep", "run_cpi", "advantage_bound", "mc_advantage",
    "mc_q_estimates", "ResetDistribution", "Start", "RandomReset", "Oracle", "Noisy",
    "NoImprovableState", "make_reset", "improvable_states", "reach_probability",
]

# Iterative PPO on two-level conversation MDPs (issue 19); bounds in cpi.multiturn_bounds.
from . import multiturn_bounds  # noqa: E402
from .ippo import IPPOConfig, IPPOResult, iterative_ppo, reinforce, token_policy_gradient  # noqa: E402
from .multiturn import (TwoLevelMDP, single_turn_maximiser, single_turn_mdp,  # noqa: E402
                        two_level_mdp)
from .multiturn_generators import conversation_mdp, funnel_conversation  # noqa: E402
from .multiturn_fit import Conversations, fit_q_mc, fit_q_td, log_conversations  # noqa: E402

__all__ += [
    "multiturn_bounds", "TwoLevelMDP", "two_level_mdp", "conversation_mdp", "funnel_conversation",
    "single_turn_mdp", "single_turn_maximiser",
    "Conversations", "log_conversations", "fit_q_mc", "fit_q_td", "IPPOConfig", "IPPOResult",
    "iterative_ppo", "token_policy_gradient", "reinforce",
]

# The reset theorem's quantities (issue 14): gated trap, per-iteration samples, censored slopes
from . import slopes  # noqa: E402
from .complexity import (ReferenceStep, SampleSize, one_step_trials, predicted_samples,  # noqa: E402
                         reference_step, return_variance, samples_per_iteration)
from .generators import bernoulli_leaves, gated_trap  # noqa: E402

__all__ += [
    "slopes", "gated_trap", "bernoulli_leaves", "ReferenceStep", "SampleSize", "reference_step",
    "return_variance", "predicted_samples", "one_step_trials", "samples_per_iteration",
]
