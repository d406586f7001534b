"""Iterative PPO on two-level conversation MDPs, and the direct token-level baselines.

Iterative PPO (Jiang, Bhandari, Yang, Munos & Lu 2025; ``docs/iterative_ppo.md``): from
``pi_0``, repeat ``K`` times

1. log ``N`` conversations under ``pi_k`` and fit ``Qhat ~ Q^{pi_k}`` (C, Y) from them
   (:mod:`cpi.multiturn_fit`: Monte Carlo or TD), or take the exact ``Q^{pi_k}``;
2. solve the single-turn problem ``max E_{y~pi} Qhat(c, y) - beta KL(pi || pi_k)`` at the
   token level (:mod:`cpi.multiturn`): exactly, or by ``inner_steps`` token-level policy
   gradient steps started at ``pi_k``; the result is ``pi_{k+1}``.

**The tabular stand-in for token-level PPO** is :func:`token_policy_gradient`: exact softmax
policy-gradient (``"pg"``) or natural policy-gradient (``"npg"``) steps on the token-level
single-turn MDP, with the RLHF per-token KL penalty ``-beta log(pi/pi_ref)`` in the reward.
PPO's clipped surrogate, minibatches and value network are not modelled: the gradients are
exact, and the trust region comes from taking few steps (and from ``beta``).

With the exact ``Q`` and the exact ``beta = 0`` maximiser, Iterative PPO *is* turn-level
policy iteration (greedy w.r.t. ``Q^{pi_k}``, first maximiser); with ``beta > 0`` it is the
soft step ``pi_{k+1} ∝ pi_k exp(Q^{pi_k}/beta)``, i.e. turn-level natural policy gradient
(:func:`cpi.natural_pg`) with ``eta = (1 - gamma)/beta``. ``N`` conversations per iteration is
*batch online*; one iteration with all the data is *fully offline* (one improvement from
``pi_0``'s logs).

Baselines on the multi-turn return itself (no Q-function): :func:`token_policy_gradient` on
``tl.token`` (exact gradients) and :func:`reinforce` (sampled token-level REINFORCE).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

from .exact import evaluate, optimal, q_from_v, value
from .mdp import TabularMDP
from .multiturn import TwoLevelMDP, single_turn_maximiser, single_turn_mdp
from .multiturn_fit import fit_q_mc, fit_q_td, log_conversations, q_error
from .pg import softmax_policy

__all__ = ["TokenPGTrace", "token_policy_gradient", "IPPOConfig", "IPPOResult", "improve",
           "iterative_ppo", "reinforce_gradient", "reinforce"]


# ----------------------------------------------------------------------------- token-level PG
class TokenPGTrace(NamedTuple):
    pi: np.ndarray  # (S, A) final token policy
    objective: np.ndarray  # (steps+1,) regularised value V(mu) - beta KL at each iterate


def _log(pi):
    with np.errstate(divide="ignore"):
        return np.log(pi)


def token_policy_gradient(mdp: TabularMDP, pi0, steps: int, eta: float, *, natural: bool = True,
                          beta: float = 0.0, pi_ref=None) -> TokenPGTrace:
    """Softmax (natural) policy gradient with exact gradients on an episodic token-level MDP.

    Parameters ``theta = log pi0`` (``-inf`` where ``pi0`` is 0: those tokens stay excluded).
    Objective ``J(theta) = E[sum_t R(s_t, a_t) - beta log(pi/pi_ref)(s_t, a_t)]`` from
    ``mdp.initial``: the RLHF objective with a per-token KL penalty. With the soft values
    ``V'`` (policy value under the penalised reward) and ``Q' = R + P V'``, the per-token
    advantage is ``A'(s, a) = Q'(s, a) - beta log(pi/pi_ref)(s, a) - V'(s)`` and

    * ``natural=False``: ``theta += eta m(s) pi(a|s) A'(s, a)``, the exact gradient
      (``m`` = expected visits from ``mdp.initial``; policy gradient theorem, Agarwal et al.
      2021 Lemma C.1 with unnormalised visits);
    * ``natural=True``: ``theta += eta A'(s, a)``, i.e. ``pi_{t+1} ∝ pi_t^{1 - eta beta}
      pi_ref^{eta beta} exp(eta Q')`` (NPG, Kakade 2001; with ``beta > 0`` the regularised NPG of
      Cen et al. 2022; ``eta = 1/beta`` is soft policy iteration). It does not depend on
      ``mdp.initial``.

    ``gamma`` of ``mdp`` may be 1 (episodic). Returns the final policy and the objective trace.
    """
    if not isinstance(mdp, TabularMDP):
        raise TypeError(f"mdp must be a cpi.TabularMDP; got {type(mdp).__name__}")
    pi = mdp.check_policy(pi0, "pi0")
    if isinstance(steps, bool) or int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be an integer >= 0; got {steps!r}")
    eta = float(eta)
    beta = float(beta)
    if not np.isfinite(eta) or eta <= 0:
        raise ValueError(f"eta (step size) must be finite and > 0; got {eta}")
    if not np.isfinite(beta) or beta < 0:
        raise ValueError(f"beta (KL coefficient) must be finite and >= 0; got {beta}")
    log_ref = 0.0
    if beta > 0:
        if pi_ref is None:
            raise ValueError("beta > 0 needs pi_ref, the token policy of the KL penalty")
        log_ref = _log(mdp.check_policy(pi_ref, "pi_ref"))
        if np.any((pi > 0) & ~np.isfinite(log_ref)):
            raise ValueError("pi0 puts mass on a token pi_ref excludes: the KL penalty is infinite")
    theta = _log(pi)
    objective = []
    for t in range(int(steps) + 1):
        logratio = 0.0
        if beta > 0:
            logratio = np.where(pi > 0, theta - np.where(pi > 0, log_ref, 0.0), 0.0)
            logratio[mdp.terminal] = 0.0
        pen = mdp if beta == 0 else TabularMDP(mdp.P, mdp.R - beta * logratio, mdp.gamma,
                                               initial=mdp.initial, terminal=mdp.terminal,
                                               order=mdp.order, name=mdp.name + "+kl")
        ev = evaluate(pen, pi)
        objective.append(float(mdp.initial @ ev.V))
        if t == steps:
            break
        adv = np.where(pi > 0, q_from_v(mdp, ev.V) - beta * logratio - ev.V[:, None], 0.0)
        step = adv if natural else ev.horizon * ev.d[:, None] * pi * adv
        theta = theta + eta * step
        theta = theta - theta.max(axis=1, keepdims=True)  # shift-invariant, keeps exp() in range
        pi = softmax_policy(theta)
        theta = _log(pi)  # exact zeros (underflow) stay excluded
    return TokenPGTrace(pi, np.array(objective))


# ----------------------------------------------------------------------------- Iterative PPO
@dataclass
class IPPOConfig:
    """One Iterative PPO run (saved beside every result of ``experiments/iterative_ppo.py``)."""

    iterations: int = 5
    """Outer iterations K (Q fit + single-turn improvement)."""
    estimator: Literal["exact", "mc", "td"] = "exact"
    """How Q^{pi_k} is obtained: exact, Monte Carlo from logs, or TD / fitted Q from logs."""
    n_conversations: int = 100
    """Conversations logged per iteration (ignored by "exact")."""
    improver: Literal["exact", "npg", "pg"] = "exact"
    """Single-turn solver: exact maximiser, or `inner_steps` token-level NPG / PG steps from pi_k."""
    beta: float = 0.0
    """KL coefficient to pi_k in the single-turn problem (0: greedy improvement)."""
    inner_steps: int = 10
    """Token-level PG steps per iteration ("npg" / "pg")."""
    eta: float = 1.0
    """Step size of the token-level PG steps."""
    seed: int = 0
    """Seed of the logged conversations (iteration k uses seed (seed, k))."""

    def __post_init__(self):
        if self.estimator not in ("exact", "mc", "td"):
            raise ValueError(f"estimator must be 'exact', 'mc' or 'td'; got {self.estimator!r}")
        if self.improver not in ("exact", "npg", "pg"):
            raise ValueError(f"improver must be 'exact', 'npg' or 'pg'; got {self.improver!r}")
        for name in ("iterations", "n_conversations"):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {v!r}")
        if isinstance(self.inner_steps, bool) or int(self.inner_steps) != self.inner_steps or self.inner_steps < 0:
            raise ValueError(f"inner_steps must be an integer >= 0; got {self.inner_steps!r}")
        if not (np.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"beta must be finite and >= 0; got {self.beta}")
        if not (np.isfinite(self.eta) and self.eta > 0):
            raise ValueError(f"eta must be finite and > 0; got {self.eta}")


@dataclass
class IPPOResult:
    """Per-iterate (``k = 0..K``) and per-step (``k < K``) records of one run, all exact."""

    value: np.ndarray  # (K+1,) V^{pi_k}(mu)
    gap_inf: np.ndarray  # (K+1,) ||V* - V^{pi_k}||_inf (turn level)
    conversations: np.ndarray  # (K+1,) conversations logged before pi_k was made
    turns: np.ndarray  # (K+1,) turns logged before pi_k was made
    q_error: np.ndarray  # (K,) RMSE of Qhat vs Q^{pi_k} under the logging distribution (0: exact)
    min_state_gain: np.ndarray  # (K,) min_c V^{pi_{k+1}}(c) - V^{pi_k}(c)
    greedy_error: np.ndarray  # (K,) max_c [max_y Q^{pi_k}(c,y) - E_{pi_{k+1}} Q^{pi_k}(c, .)]
    turn_policies: np.ndarray  # (K+1, C, Y)
    pi: np.ndarray  # (S_token, vocab) final token policy
    v_star: float  # V*(mu)


def improve(tl: TwoLevelMDP, Q, pi_k, cfg: IPPOConfig, weights=None) -> np.ndarray:
    """One single-turn improvement of the token policy ``pi_k`` against ``Q`` (C, Y).

    ``weights`` (C,) is the prompt distribution of the single-turn MDP (only ``"pg"`` uses it;
    default ``tl.turn.initial``).
    """
    if cfg.improver == "exact":
        return single_turn_maximiser(tl, Q, cfg.beta, pi_k)[0]
    mdp = single_turn_mdp(tl, Q, weights)
    return token_policy_gradient(mdp, pi_k, cfg.inner_steps, cfg.eta, natural=cfg.improver == "npg",
                                 beta=cfg.beta, pi_ref=pi_k).pi


def iterative_ppo(tl: TwoLevelMDP, cfg: IPPOConfig, pi0=None) -> IPPOResult:
    """Run Iterative PPO from the token policy ``pi0`` (default uniform); see the module docstring.

    The single-turn MDP's prompt distribution is the turn-level occupancy ``d_{pi_k, mu}``
    (the states logged conversations visit). Every quantity recorded is computed exactly.
    """
    if not isinstance(tl, TwoLevelMDP):
        raise TypeError(f"tl must be a cpi.multiturn.TwoLevelMDP; got {type(tl).__name__}")
    if not isinstance(cfg, IPPOConfig):
        raise TypeError(f"cfg must be an IPPOConfig; got {type(cfg).__name__}")
    pi = tl.uniform_policy() if pi0 is None else tl.token.check_policy(pi0, "pi0").copy()
    V_star, _ = optimal(tl.turn)
    mu = tl.turn.initial
    K = cfg.iterations
    pis, vals, gaps, convs, turns = [], [], [], [0], [0]
    qerr, mingain, gerr = [], [], []
    for k in range(K + 1):
        pt = tl.turn_policy(pi)
        ev = evaluate(tl.turn, pt)
        pis.append(pt)
        vals.append(float(mu @ ev.V))
        gaps.append(float(np.abs(V_star - ev.V).max()))
        if k > 0:
            mingain.append(float((ev.V - V_prev).min()))
            gerr.append(float((Q.max(axis=1) - (pt * Q).sum(axis=1)).max()))
        if k == K:
            break
        Q = q_from_v(tl.turn, ev.V)
        V_prev = ev.V
        if cfg.estimator == "exact":
            Q_hat, n_turns = Q, 0
        else:
            logs = log_conversations(tl, pt, cfg.n_conversations, seed=np.random.SeedSequence([cfg.seed, k]))
            Q_hat = fit_q_mc(tl, logs) if cfg.estimator == "mc" else fit_q_td(tl, logs, pt)
            n_turns = logs.turns
        qerr.append(0.0 if cfg.estimator == "exact" else q_error(tl, Q_hat, Q, pt))
        convs.append(convs[-1] + (0 if cfg.estimator == "exact" else cfg.n_conversations))
        turns.append(turns[-1] + n_turns)
        pi = improve(tl, Q_hat, pi, cfg, weights=ev.d)
    return IPPOResult(np.array(vals), np.array(gaps), np.array(convs), np.array(turns), np.array(qerr),
                      np.array(mingain), np.array(gerr), np.array(pis), pi, float(mu @ V_star))


# ----------------------------------------------------------------------------- direct REINFORCE
def reinforce_gradient(tl: TwoLevelMDP, pi, logs, baseline=None) -> np.ndarray:
    """REINFORCE estimate (S_token, vocab) of ``grad_theta V^{pi_theta}(mu)`` from logged conversations.

    ``(1/n) sum_turns (G_t - b(c_t)) sum_j (e_{y_t,j} - pi(.|s_t,j))`` at the token states
    ``s_t,j`` the response ``y_t`` passes (softmax parameters, ``grad log pi(v|s) = e_v - pi(.|s)``);
    ``baseline`` (C,) must not depend on these logs (default 0). Unbiased for the exact gradient
    ``m(s) pi(a|s) A(s, a)`` of :func:`token_policy_gradient` on ``tl.token``.
    """
    pi = tl.token.check_policy(pi)
    b = np.zeros(tl.C) if baseline is None else np.asarray(baseline, dtype=np.float64)
    nodes, tokens = tl.paths()
    L = tl.length
    w = np.repeat((logs.G - b[logs.c]) / logs.n, L)  # (T*L,)
    s = (tl.roots()[logs.c][:, None] + nodes[logs.y]).ravel()  # (T*L,) token states visited
    grad = np.zeros_like(pi)
    np.add.at(grad, (s, tokens[logs.y].ravel()), w)
    grad -= np.bincount(s, w, minlength=tl.token.S)[:, None] * pi
    return grad


def reinforce(tl: TwoLevelMDP, n_per_step: int, steps: int, eta: float, *, seed: int = 0, pi0=None):
    """Token-level REINFORCE on the multi-turn return (no Q-function), ``n_per_step`` conversations a step.

    ``theta += eta * reinforce_gradient(...)`` with the baseline ``b(c)`` = mean return at ``c``
    in the *previous* batch (independent of the current one, so the estimate stays unbiased).
    Returns ``(values (steps+1,), conversations (steps+1,), pi)`` with ``values`` the exact
    ``V^{pi_t}(mu)``.
    """
    if isinstance(n_per_step, bool) or int(n_per_step) != n_per_step or n_per_step < 1:
        raise ValueError(f"n_per_step must be an integer >= 1; got {n_per_step!r}")
    if isinstance(steps, bool) or int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be an integer >= 0; got {steps!r}")
    if not (np.isfinite(eta) and eta > 0):
        raise ValueError(f"eta must be finite and > 0; got {eta}")
    pi = tl.uniform_policy() if pi0 is None else tl.token.check_policy(pi0, "pi0").copy()
    theta = _log(pi)
    b = np.zeros(tl.C)
    vals = []
    for t in range(int(steps) + 1):
        pt = tl.turn_policy(pi)
        vals.append(float(tl.turn.initial @ value(tl.turn, pt)))
        if t == steps:
            break
        logs = log_conversations(tl, pt, n_per_step, seed=np.random.SeedSequence([seed, t]))
        theta = np.where(pi > 0, theta + eta * reinforce_gradient(tl, pi, logs, b), -np.inf)
        theta -= theta.max(axis=1, keepdims=True)
        pi = softmax_policy(theta)
        cnt = np.bincount(logs.c, minlength=tl.C)
        b = np.where(cnt > 0, np.bincount(logs.c, logs.G, minlength=tl.C) / np.maximum(cnt, 1), b)
    return np.array(vals), n_per_step * np.arange(int(steps) + 1), pi
