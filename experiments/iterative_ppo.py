"""Iterative PPO in the tabular lab: the multi-turn -> single-turn reduction, checked and measured.

Claims of Jiang, Bhandari, Yang, Munos & Lu (2025), "Aligning LLMs Toward Multi-Turn
Conversational Outcomes Using Iterative PPO", tested on two-level conversation MDPs
(``cpi.multiturn``; ``docs/iterative_ppo.md``). All math comes from ``cpi``; this script only
draws instances, runs the arms, and writes numbers, a figure and the predictions it judged.

1. **Bound check** - every identity and bound of ``cpi.multiturn_bounds`` (and the reused
   ``cpi.bounds.pdl_gain`` / ``cpi.pg_bounds`` results) on thousands of random conversation MDPs;
   slack = bound side minus realised side (negative = violated), tolerance 1e-9 max(1, ||V||).
2. **Comparison** on sales funnels (``cpi.funnel_conversation``: the big deal waits at the end
   of the funnel, one policy-iteration step from the uniform policy only takes the small deal),
   the same instances for every arm: exact policy iteration (online, exact Q); Iterative PPO
   with N logged conversations per iteration (batch online; Q by Monte Carlo or TD); one-batch
   fully offline improvement from the uniform policy's K*N conversations; direct token-level
   REINFORCE on the multi-turn return; direct token-level NPG with exact gradients. Value is
   reported as the fraction of the gap V*(mu) - V^{pi_0}(mu) closed, one point per instance.
3. **Q fit** - RMSE of the MC / TD fits of Q^{pi_0} against the number of logged conversations.

    python experiments/iterative_ppo.py --quick     # <= 1 min on an idle 2-core machine
    python experiments/iterative_ppo.py --smoke     # seconds (tests)
    python experiments/iterative_ppo.py --full      # 50 instances, 20,000 bound cases

Writes ``<out>.png``, ``<out>.csv`` (the curves behind the figure), ``<out>.json`` (config,
predictions and verdict rules, per-instance results, contrasts) and ``<out>_bounds.json``.
One script read top to bottom (bound check, arms, statistics, figure), hence longer than the
~400 lines of a package module.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

import cpi  # noqa: E402
from cpi import bounds as B  # noqa: E402
from cpi import multiturn_bounds as MB  # noqa: E402
from cpi import pg_bounds as PB  # noqa: E402
from cpi.multiturn import response_kl, single_turn_maximiser, single_turn_mdp, soft_improvement  # noqa: E402


@dataclass
class Config:
    """Sizes of one profile (saved in the JSON)."""

    instances: int = 16
    """Funnel instances (seeds 0..instances-1; the step sizes were chosen on seeds 1000-1009)."""
    n_stages: int = 5
    """Funnel stages (exact policy iteration needs this many steps)."""
    vocab: int = 3
    length: int = 2
    """Tokens per response: Y = vocab**length responses."""
    gamma: float = 0.9
    """Continuation probability after a turn (10 turns on average)."""
    iterations: int = 12
    """Outer iterations K of policy iteration / Iterative PPO."""
    batch_sizes: tuple = (100, 400, 1600)
    """N, conversations logged per Iterative PPO iteration."""
    inner_steps: int = 10
    """Token-level NPG steps per iteration (the PPO stand-in)."""
    eta: float = 1.0
    """Their step size."""
    reinforce_n: int = 100
    """Conversations per REINFORCE step."""
    reinforce_eta: float = 10.0
    """REINFORCE step size (pilot seeds 1000-1009: best of 1, 3, 10, 30)."""
    q_grid: tuple = (50, 100, 200, 400, 800, 1600, 3200)
    """Numbers of logged conversations for the Q-fit error."""
    q_seeds: int = 2
    """Log batches per instance and N (averaged: one point per instance)."""
    bound_cases: int = 2000
    """Random conversation MDPs in the bound check."""
    seed: int = 0


PROFILES = {
    "smoke": Config(instances=3, iterations=4, batch_sizes=(50, 200), reinforce_n=50,
                    q_grid=(50, 200, 800), q_seeds=1, bound_cases=60),
    "quick": Config(),
    "full": Config(instances=50, iterations=16, batch_sizes=(100, 400, 1600, 6400), q_seeds=4,
                   q_grid=(50, 100, 200, 400, 800, 1600, 3200, 6400, 12800), bound_cases=20000),
}

PREDICTIONS = {
    "reduction": "Iterative PPO with the exact Q and the exact beta = 0 single-turn maximiser equals policy "
                 "iteration step for step. Rule: reproduced if max |V_IPPO - V_PI| over all instances and "
                 "iterations <= 1e-9.",
    "improvement": "Solving the single-turn problem with the token-level PPO stand-in (10 NPG steps, exact Q) is a "
                   "policy improvement step: no state's value drops. Rule: reproduced if min over instances, "
                   "iterations and states of V^{k+1} - V^k >= -1e-9 and the bound check has 0 violations.",
    "batch_online": "Batch online lies between online and offline: after K iterations Iterative PPO with the largest "
                    "N beats one-batch offline improvement on the same number of conversations (offline cannot "
                    "pass one policy-iteration step from pi_0, 0.3-0.5 of the gap here), for MC and TD, and more "
                    "conversations per iteration help (largest N beats smallest N). Rule: 4 paired contrasts "
                    "(one point per instance, paired t-test, Holm); reproduced if all 4 are positive and "
                    "significant, partly if some are, not reproduced if none is or one is significantly negative.",
    "q_fit": "The RMSE of the fitted Q^{pi_0} falls like N^(-1/2). Rule: reproduced if the 95% CI of the log-log "
             "slope (over instances) meets [-0.6, -0.4], for MC and for TD.",
    "vs_reinforce": "Exploratory (no claim of the paper): at the same number of logged conversations, Iterative PPO "
                    "(TD, largest N) vs direct token-level REINFORCE, as a paired difference; and the conversations "
                    "each arm logs until 90% of the gap is closed (censored at the run's end). No verdict.",
}


# ----------------------------------------------------------------------------- bound check
BOUNDS = {  # name: (kind, statement, source, status)
    "levels": ("identity", "V_token(root of c) = V_turn(c)", "two-level construction", "proved here"),
    "single_turn": ("identity", "single-turn MDP value at root = E_{y~pi} Q(c, y)", "two-level construction",
                    "proved here"),
    "maximiser": ("identity", "token-by-token maximiser = pi_k exp(Q/beta)/Z (greedy at beta = 0)",
                  "Jiang et al. 2025 reduction", "proved here"),
    "kl_chain": ("identity", "response KL = sum of visit-weighted token KLs", "chain rule", "proved here"),
    "reduction_pdl": ("identity", "V^new(mu) - V^k(mu) = h E_{d_new}[single-turn gain]",
                      "Kakade & Langford 2002 Lemma 6.1", "proved (cpi.bounds.pdl_gain)"),
    "soft_gain": ("identity", "soft step's single-turn gain = beta (KL(new||k) + KL(k||new))",
                  "multiturn_bounds.soft_step_gain", "proved here"),
    "pointwise": ("lower", "min_c V^new(c) - V^k(c) >= pointwise_gain_lower_bound (>= 0 for improvement steps)",
                  "policy improvement theorem", "proved here"),
    "fitted_greedy": ("lower", "greedy on Qhat: gain >= (E_{d_new} Delta - 2 eps)/(1 - gamma)",
                      "pg_bounds.one_step_improvement_bound", "proved (cpi.pg_bounds)"),
    "fitted_soft": ("lower", "soft step on Qhat: gain >= h E_{d_new}[beta SKL_hat - TV span(Q - Qhat)]",
                    "multiturn_bounds.fitted_soft_step_lower_bound", "proved here"),
    "approx_step": ("upper", "token NPG steps: ||V* - V^new|| <= gamma ||V* - V^k|| + eps/(1 - gamma)",
                    "pg_bounds.approx_pi_step_bound", "proved (cpi.pg_bounds)"),
    "ippo_is_pi": ("identity", "exact-Q beta = 0 Iterative PPO = policy iteration (3 steps)",
                   "Jiang et al. 2025 reduction", "proved here"),
    "soft_ippo_npg": ("upper", "exact-Q soft Iterative PPO: V* - V^T <= npg_bound(eta = (1-gamma)/beta)",
                      "Agarwal et al. 2021 Thm 5.3 via soft_step_npg_eta", "proved (cpi.pg_bounds)"),
}


class BoundTable:
    """Slack per bound: lower bounds realised - bound, upper bounds bound - realised, identities -|diff|."""

    def __init__(self):
        self.slack = {b: [] for b in BOUNDS}
        self.scaled = {b: [] for b in BOUNDS}
        self.worst = {}

    def add(self, name, bound, realised, scale, where):
        kind = BOUNDS[name][0]
        if kind == "identity":
            s = -abs(realised - bound)
        else:
            s = realised - bound if kind == "lower" else bound - realised
        self.slack[name].append(s)
        self.scaled[name].append(s / scale)
        if s < -1e-9 * scale and (name not in self.worst or s / scale < self.worst[name][0]):
            self.worst[name] = (s / scale, where)

    def rows(self):
        out = []
        for b, (kind, statement, source, status) in BOUNDS.items():
            s, sc = np.array(self.slack[b]), np.array(self.scaled[b])
            out.append({"bound": b, "kind": kind, "statement": statement, "source": source, "status": status,
                        "cases": int(s.size), "violations": int((sc < -1e-9).sum()),
                        "min_slack": float(s.min()) if s.size else float("nan"),
                        "min_scaled_slack": float(sc.min()) if s.size else float("nan"),
                        "median_slack": float(np.median(s)) if s.size else float("nan")})
        return out


def random_instance(rng):
    C, V = int(rng.integers(1, 7)), int(rng.integers(1, 4))
    L = int(rng.integers(1, 4 if V > 1 else 3))
    gamma = float(rng.choice([0.0, 0.5, 0.8, 0.95]))
    if V > 1 and rng.random() < 0.25:
        return cpi.funnel_conversation(C, V, L, gamma, lose_max=float(rng.random()), seed=int(rng.integers(2**31)),
                                       entry=rng.dirichlet(np.ones(C)))
    return cpi.conversation_mdp(C, V, L, gamma, branching=int(rng.integers(1, C + 1)),
                                reward=str(rng.choice(["sparse", "turn"])), seed=int(rng.integers(2**31)))


def check_case(tl, rng, table: BoundTable, where: str):
    """One random (instance, pi_k): every identity and bound of the table."""
    pi_k = rng.dirichlet(np.ones(tl.vocab) * float(rng.choice([0.3, 1.0, 3.0])), size=tl.token.S)
    pt_k = tl.turn_policy(pi_k)
    ev_k = cpi.evaluate(tl.turn, pt_k)
    Q = cpi.q_from_v(tl.turn, ev_k.V)
    V_star = cpi.optimal(tl.turn)[0]
    scale = max(1.0, float(np.abs(V_star).max()))
    roots, mu, g = tl.roots(), tl.turn.initial, tl.gamma
    table.add("levels", 0.0, float(np.abs(cpi.value(tl.token, pi_k)[roots] - ev_k.V).max()), scale, where)
    table.add("single_turn", 0.0, float(np.abs(cpi.value(single_turn_mdp(tl, Q), pi_k)[roots] - ev_k.V).max()),
              scale, where)
    beta = float(rng.choice([0.01, 0.1, 1.0])) * max(float(np.ptp(Q)), 1e-3)
    steps = {"greedy": single_turn_maximiser(tl, Q, 0.0, pi_k)[0], "soft": single_turn_maximiser(tl, Q, beta, pi_k)[0],
             "npg": cpi.token_policy_gradient(single_turn_mdp(tl, Q), pi_k, int(rng.integers(1, 6)),
                                              float(rng.choice([0.3, 3.0])) / max(float(np.ptp(Q)), 1e-3)).pi}
    for kind, pi_new in steps.items():
        pt_new = tl.turn_policy(pi_new)
        ev_new = cpi.evaluate(tl.turn, pt_new)
        gain = MB.single_turn_gain(pt_new, Q, pt_k)
        table.add("reduction_pdl", B.pdl_gain(ev_new.d, gain, ev_new.horizon), float(mu @ (ev_new.V - ev_k.V)),
                  scale, where)
        table.add("pointwise", MB.pointwise_gain_lower_bound(gain, g), float((ev_new.V - ev_k.V).min()), scale, where)
        if kind != "npg":
            closed_form = soft_improvement(pt_k, Q, 0.0 if kind == "greedy" else beta)
            table.add("maximiser", 0.0, float(np.abs(pt_new - closed_form).max()), 1.0, where)
        if kind == "soft":
            kl_f, kl_r = response_kl(tl, pi_new, pi_k), response_kl(tl, pi_k, pi_new)
            table.add("soft_gain", 0.0, float(np.abs(gain - MB.soft_step_gain(beta, kl_f, kl_r)).max()), scale, where)
            p = tl.turn_policy(pi_new)
            table.add("kl_chain", 0.0, float(np.abs(kl_f - (p * np.log(np.where(p > 0, p / pt_k, 1.0))).sum(1)).max()),
                      1.0, where)
        if kind == "npg" and g > 0:
            eps = max(float((Q.max(1) - (pt_new * Q).sum(1)).max()), 0.0)  # >= 0 up to round-off
            table.add("approx_step", PB.approx_pi_step_bound(float(np.abs(V_star - ev_k.V).max()), g, eps),
                      float(np.abs(V_star - ev_new.V).max()), scale, where)
    # a fitted Q: greedy and soft steps on Qhat = Q + noise
    Q_hat = Q + rng.normal(size=Q.shape) * float(rng.choice([0.01, 0.1, 1.0])) * max(float(np.ptp(Q)), 1e-3)
    for kind in ("greedy", "soft"):
        pi_new = single_turn_maximiser(tl, Q_hat, 0.0 if kind == "greedy" else beta, pi_k)[0]
        pt_new = tl.turn_policy(pi_new)
        ev_new = cpi.evaluate(tl.turn, pt_new)
        realised = float(mu @ (ev_new.V - ev_k.V))
        if kind == "greedy":
            delta = np.maximum((Q - ev_k.V[:, None]).max(1), 0.0)
            bound = PB.one_step_improvement_bound(delta, ev_new.d, float(np.abs(Q_hat - Q).max()), g)
            table.add("fitted_greedy", bound, realised, scale, where)
        else:
            skl = response_kl(tl, pi_new, pi_k) + response_kl(tl, pi_k, pi_new)
            try:
                bound = MB.fitted_soft_step_lower_bound(ev_new.d, ev_new.horizon, beta, skl,
                                                        MB.total_variation(pt_new, pt_k), MB.q_error_span(Q_hat, Q))
            except ValueError:  # exp(Qhat/beta)/Z underflowed to 0 in float64: no finite bound to check
                continue
            table.add("fitted_soft", bound, realised, scale, where)
    # Iterative PPO with the exact Q from the uniform policy: policy iteration, and the NPG rate
    res = cpi.iterative_ppo(tl, cpi.IPPOConfig(iterations=3))
    pt = tl.turn_policy(tl.uniform_policy())
    for k in range(4):
        table.add("ippo_is_pi", mu @ cpi.value(tl.turn, pt), res.value[k], scale, where)
        pt = cpi.greedy(cpi.q_values(tl.turn, pt))
    soft = cpi.iterative_ppo(tl, cpi.IPPOConfig(iterations=3, beta=beta))
    bound = PB.npg_bound(np.arange(1, 4), MB.soft_step_npg_eta(beta, g), g, tl.Y, cpi.pg.reward_span(tl.turn))
    for t in range(3):
        table.add("soft_ippo_npg", bound[t], soft.v_star - soft.value[t + 1], scale, where)


def bound_check(cfg: Config):
    rng = np.random.default_rng([cfg.seed, 19])
    table = BoundTable()
    for k in range(cfg.bound_cases):
        tl = random_instance(rng)
        check_case(tl, rng, table, f"case {k} ({tl.turn.name}, gamma={tl.gamma})")
    return table


# ----------------------------------------------------------------------------- statistics
def mean_ci(x, axis=0):
    """Mean and 95% t-interval half-width over ``axis`` (one point per instance)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[axis]
    m = x.mean(axis=axis)
    if n < 2:
        return m, np.full_like(m, np.nan)
    return m, stats.t.ppf(0.975, n - 1) * x.std(axis=axis, ddof=1) / np.sqrt(n)


def paired_contrasts(named_diffs: dict) -> list:
    """Paired t-tests of per-instance differences with Holm's correction and the minimum
    detectable effect (80% power at the Bonferroni level, the strictest Holm step)."""
    m = len(named_diffs)
    rows = []
    for name, d in named_diffs.items():
        d = np.asarray(d, dtype=np.float64)
        n = d.size
        sd = d.std(ddof=1) if n > 1 else np.nan
        p = float(stats.ttest_1samp(d, 0.0).pvalue) if n > 1 and sd > 0 else (0.0 if d.mean() != 0 else 1.0)
        mean, ci = mean_ci(d)
        mde = (stats.t.ppf(1 - 0.025 / m, n - 1) + stats.t.ppf(0.8, n - 1)) * sd / np.sqrt(n) if n > 1 else np.nan
        rows.append({"contrast": name, "mean": float(mean), "ci95": float(ci), "p": p, "n": n, "mde": float(mde)})
    order = np.argsort([r["p"] for r in rows])
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * rows[i]["p"]))
        rows[i]["p_holm"] = running
        rows[i]["significant"] = bool(running < 0.05)
    return rows


def slope_fit(N, err):
    """Per-instance least-squares slope of log(err) on log(N); mean and 95% CI over instances."""
    x = np.log(np.asarray(N, dtype=np.float64))
    slopes = [np.polyfit(x, np.log(e), 1)[0] for e in err]
    m, ci = mean_ci(slopes)
    return {"slope": float(m), "ci_lo": float(m - ci), "ci_hi": float(m + ci), "per_instance": slopes}


# ----------------------------------------------------------------------------- arms
def frac(values, v0, v_star):
    return (np.asarray(values) - v0) / (v_star - v0)


def run_instance(tl, cfg: Config, i: int) -> dict:
    """Every arm on one funnel instance; fractions of the gap closed."""
    K = cfg.iterations
    npg = dict(improver="npg", inner_steps=cfg.inner_steps, eta=cfg.eta)
    pi_run = cpi.iterative_ppo(tl, cpi.IPPOConfig(iterations=K))
    v0, vs = pi_run.value[0], pi_run.v_star
    ref = cpi.policy_iteration(tl.turn, K, pi0=tl.turn_policy(tl.uniform_policy()))
    out = {"v0": v0, "v_star": vs, "pi": frac(pi_run.value, v0, vs).tolist(),
           "pi_vs_policy_iteration": float(np.abs(pi_run.value - (vs - ref.subopt)).max())}
    exact_npg = cpi.iterative_ppo(tl, cpi.IPPOConfig(iterations=K, **npg))
    out["exact_npg"] = frac(exact_npg.value, v0, vs).tolist()
    out["exact_npg_min_state_gain"] = float(exact_npg.min_state_gain.min())
    for est in ("mc", "td"):
        for N in cfg.batch_sizes:
            seed = 1000 * i + N
            r = cpi.iterative_ppo(tl, cpi.IPPOConfig(iterations=K, estimator=est, n_conversations=N, seed=seed, **npg))
            off = cpi.iterative_ppo(tl, cpi.IPPOConfig(
                iterations=1, estimator=est, n_conversations=K * N, seed=seed + 1,
                improver="npg", inner_steps=K * cfg.inner_steps, eta=cfg.eta))
            out[f"ippo_{est}_{N}"] = frac(r.value, v0, vs).tolist()
            out[f"ippo_{est}_{N}_qerr"] = r.q_error.tolist()
            out[f"offline_{est}_{N}"] = float(frac(off.value[-1], v0, vs))
    steps = K * max(cfg.batch_sizes) // cfg.reinforce_n
    rv, rconv, _ = cpi.reinforce(tl, cfg.reinforce_n, steps, cfg.reinforce_eta, seed=1000 * i + 7)
    out["reinforce"] = frac(rv, v0, vs).tolist()
    out["reinforce_conversations"] = rconv.tolist()
    direct = cpi.token_policy_gradient(tl.token, tl.uniform_policy(), K * cfg.inner_steps, cfg.eta)
    out["direct_npg"] = frac(direct.objective, v0, vs).tolist()
    return out


def q_fit_errors(tl, cfg: Config, i: int) -> dict:
    """Mean RMSE of the MC / TD fits of Q^{pi_0} for each N in the grid (averaged over q_seeds)."""
    pt = tl.turn_policy(tl.uniform_policy())
    Q = cpi.q_values(tl.turn, pt)
    err = {"mc": [], "td": []}
    for N in cfg.q_grid:
        e = {"mc": [], "td": []}
        for s in range(cfg.q_seeds):
            logs = cpi.log_conversations(tl, pt, N, seed=np.random.SeedSequence([i, N, s]))
            e["mc"].append(cpi.multiturn_fit.q_error(tl, cpi.fit_q_mc(tl, logs), Q, pt))
            e["td"].append(cpi.multiturn_fit.q_error(tl, cpi.fit_q_td(tl, logs, pt), Q, pt))
        for k in err:
            err[k].append(float(np.mean(e[k])))
    return err


# ----------------------------------------------------------------------------- summary, verdicts
def summarise(cfg: Config, runs: list, qerr: list) -> dict:
    K, Ns = cfg.iterations, cfg.batch_sizes
    Nmin, Nmax = min(Ns), max(Ns)
    curves = {}
    for key in ["pi", "exact_npg", "direct_npg", "reinforce"] + [f"ippo_{e}_{N}" for e in ("mc", "td") for N in Ns]:
        m, ci = mean_ci(np.array([r[key] for r in runs]))
        curves[key] = {"mean": m.tolist(), "ci95": ci.tolist()}
    final = {key: [r[key][-1] for r in runs] for key in curves}
    for e in ("mc", "td"):
        for N in Ns:
            final[f"offline_{e}_{N}"] = [r[f"offline_{e}_{N}"] for r in runs]
    budget = K * Nmax
    rv_at = [float(np.interp(budget, r["reinforce_conversations"], r["reinforce"])) for r in runs]
    contrasts = paired_contrasts({
        f"IPPO-MC(N={Nmax}) - offline-MC({budget})": np.subtract(final[f"ippo_mc_{Nmax}"], final[f"offline_mc_{Nmax}"]),
        f"IPPO-TD(N={Nmax}) - offline-TD({budget})": np.subtract(final[f"ippo_td_{Nmax}"], final[f"offline_td_{Nmax}"]),
        f"IPPO-MC(N={Nmax}) - IPPO-MC(N={Nmin})": np.subtract(final[f"ippo_mc_{Nmax}"], final[f"ippo_mc_{Nmin}"]),
        f"IPPO-TD(N={Nmax}) - IPPO-TD(N={Nmin})": np.subtract(final[f"ippo_td_{Nmax}"], final[f"ippo_td_{Nmin}"]),
    })
    explore = paired_contrasts({f"IPPO-TD(N={Nmax}) - REINFORCE, both at {budget} conversations":
                                np.subtract(final[f"ippo_td_{Nmax}"], rv_at)})
    to_target = {}  # conversations until 90% of the gap is closed (inf: not within the run; censored)
    for key in [f"ippo_{e}_{N}" for e in ("mc", "td") for N in Ns] + ["reinforce"]:
        c = []
        for r in runs:
            x = (np.array(r["reinforce_conversations"]) if key == "reinforce"
                 else int(key.split("_")[2]) * np.arange(K + 1))
            hit = np.flatnonzero(np.array(r[key]) >= 0.9)
            c.append(float(x[hit[0]]) if hit.size else float("inf"))
        med = float(np.median(c))
        to_target[key] = {"per_instance": [None if np.isinf(v) else v for v in c],
                          "median": None if np.isinf(med) else med, "censored": int(np.isinf(c).sum())}
    fits = {e: slope_fit(cfg.q_grid, [q[e] for q in qerr]) for e in ("mc", "td")}
    q_mean = {e: mean_ci(np.array([q[e] for q in qerr])) for e in ("mc", "td")}
    final_ci = {k: [float(x) for x in mean_ci(v)] for k, v in final.items()}
    return {"curves": curves, "final": final, "final_ci": final_ci, "contrasts": contrasts, "exploratory": explore,
            "q_fit": {e: {**fits[e], "N": list(cfg.q_grid), "rmse_mean": q_mean[e][0].tolist(),
                          "rmse_ci95": q_mean[e][1].tolist()} for e in fits},
            "reinforce_at_budget": rv_at, "budget": budget, "conversations_to_90pct": to_target,
            "reduction_max_abs_diff": max(r["pi_vs_policy_iteration"] for r in runs),
            "improvement_min_state_gain": min(r["exact_npg_min_state_gain"] for r in runs)}


def verdicts(summary: dict, bound_rows: list) -> dict:
    """The rules of PREDICTIONS, applied (the report re-applies them from the JSON)."""
    viol = sum(r["violations"] for r in bound_rows)
    c = summary["contrasts"]
    pos = sum(r["significant"] and r["mean"] > 0 for r in c)
    neg = any(r["significant"] and r["mean"] < 0 for r in c)
    ok = [summary["q_fit"][e]["ci_lo"] <= -0.4 and summary["q_fit"][e]["ci_hi"] >= -0.6 for e in ("mc", "td")]
    return {
        "reduction": "reproduced" if summary["reduction_max_abs_diff"] <= 1e-9 else "not reproduced",
        "improvement": ("reproduced" if summary["improvement_min_state_gain"] >= -1e-9 and viol == 0
                        else "not reproduced"),
        "batch_online": ("reproduced" if pos == len(c) and not neg else
                         "not reproduced" if pos == 0 or neg else "partly reproduced"),
        "q_fit": "reproduced" if all(ok) else ("partly reproduced" if any(ok) else "not reproduced"),
        "bounds": "reproduced" if viol == 0 else "not reproduced",
    }


# ----------------------------------------------------------------------------- outputs
ARM_STYLE = {"mc": ("o", "--"), "td": ("s", "-")}


def plot(cfg: Config, summary: dict, runs: list, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cur, K = summary["curves"], cfg.iterations
    colors = plt.cm.viridis(np.linspace(0.15, 0.85, len(cfg.batch_sizes)))
    fig, ax = plt.subplots(1, 3, figsize=(17, 5))
    it = np.arange(K + 1)
    for key, lab, col in (("pi", "policy iteration (exact Q)", "k"),
                          ("exact_npg", "Iterative PPO, exact Q (10 token NPG steps/iter)", "tab:red")):
        m, ci = np.array(cur[key]["mean"]), np.array(cur[key]["ci95"])
        ax[0].plot(it, m, color=col, lw=2, label=lab, zorder=5)
    for e in ("mc", "td"):
        for N, col in zip(cfg.batch_sizes, colors):
            m, ci = np.array(cur[f"ippo_{e}_{N}"]["mean"]), np.array(cur[f"ippo_{e}_{N}"]["ci95"])
            mk, ls = ARM_STYLE[e]
            ax[0].errorbar(it, m, ci, color=col, ls=ls, marker=mk, ms=3, capsize=2,
                           label=f"Iterative PPO {e.upper()}, N={N}")
            ax[1].errorbar(N * it[1:], m[1:], ci[1:], color=col, ls=ls, marker=mk, ms=3, capsize=2,
                           label=f"Iterative PPO {e.upper()}, N={N}")
            fo = summary["final"][f"offline_{e}_{N}"]
            ax[1].errorbar([K * N], [np.mean(fo)], [mean_ci(fo)[1]], color=col, marker="*" if e == "td" else "P",
                           ms=11, ls="none", capsize=3, label=f"offline {e.upper()} (one batch of {K}x{N})")
    d = np.array(cur["direct_npg"]["mean"])
    ax[0].plot(np.arange(d.size) / cfg.inner_steps, d, color="tab:orange", lw=1.5, ls=":",
               label=f"direct token NPG, exact gradient ({cfg.inner_steps} steps per tick)")
    rm, rc = np.array(cur["reinforce"]["mean"]), np.array(cur["reinforce"]["ci95"])
    x = np.array(runs[0]["reinforce_conversations"])
    ax[1].plot(x[1:], rm[1:], color="tab:orange", lw=1.5, label=f"direct token REINFORCE ({cfg.reinforce_n}/step)")
    ax[1].fill_between(x[1:], (rm - rc)[1:], (rm + rc)[1:], color="tab:orange", alpha=0.2)
    ax[1].axhline(cur["pi"]["mean"][1], color="k", ls=":", lw=1, label="one exact PI step from pi_0")
    ax[1].set_xscale("log")
    for e in ("mc", "td"):
        q = summary["q_fit"][e]
        ax[2].errorbar(q["N"], q["rmse_mean"], q["rmse_ci95"], marker=ARM_STYLE[e][0], ls=ARM_STYLE[e][1], capsize=2,
                       label=f"{e.upper()}: slope {q['slope']:.2f} [{q['ci_lo']:.2f}, {q['ci_hi']:.2f}]")
    N = np.array(cfg.q_grid, dtype=float)
    q0 = summary["q_fit"]["mc"]["rmse_mean"][0]
    ax[2].plot(N, q0 * np.sqrt(N[0] / N), color="gray", ls=":", label="N^(-1/2) reference")
    ax[2].set_xscale("log")
    ax[2].set_yscale("log")
    ax[0].set(xlabel="iteration k", ylabel="fraction of the gap V* - V^pi0 closed",
              title=f"(a) value vs iterations ({cfg.instances} funnels, 95% CI)")
    ax[1].set(xlabel="logged conversations (cumulative)", ylabel="fraction of the gap closed",
              title="(b) value vs logged conversations")
    ax[2].set(xlabel="logged conversations N (from pi_0)", ylabel="RMSE of Q_hat vs Q^pi0 (logging distribution)",
              title="(c) fitted-Q error")
    for a in ax:
        a.grid(alpha=0.3)
    ax[0].legend(fontsize=6.5, loc="lower right")
    ax[1].legend(fontsize=6, loc="lower right", ncol=2)
    ax[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_csv(cfg: Config, summary: dict, runs: list, path: Path):
    rows = []
    K = cfg.iterations
    for key, c in summary["curves"].items():
        arm, est, N = (key.split("_") + [None, None])[:3] if key.startswith("ippo") else (key, "", "")
        for k, (m, ci) in enumerate(zip(c["mean"], c["ci95"])):
            x = runs[0]["reinforce_conversations"][k] if key == "reinforce" else (
                k * int(N) if key.startswith("ippo") else k)
            rows.append({"panel": "b" if key == "reinforce" else "a", "arm": arm, "estimator": est, "N": N,
                         "iteration_or_step": k, "conversations": x if key.startswith(("ippo", "reinforce")) else 0,
                         "mean": m, "ci95": ci, "instances": len(runs)})
    for key, v in summary["final"].items():
        if key.startswith("offline"):
            _, est, N = key.split("_")
            m, ci = mean_ci(v)
            rows.append({"panel": "b", "arm": "offline", "estimator": est, "N": N, "iteration_or_step": 1,
                         "conversations": K * int(N), "mean": float(m), "ci95": float(ci), "instances": len(v)})
    for e, q in summary["q_fit"].items():
        for N, m, ci in zip(q["N"], q["rmse_mean"], q["rmse_ci95"]):
            rows.append({"panel": "c", "arm": "q_rmse", "estimator": e, "N": N, "iteration_or_step": 0,
                         "conversations": N, "mean": m, "ci95": ci, "instances": len(runs)})
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    for p in PROFILES:
        g.add_argument(f"--{p}", dest="profile", action="store_const", const=p)
    ap.add_argument("--out", default=str(ROOT / "paper_figs" / "iterative_ppo"), help="path prefix of the outputs")
    args = ap.parse_args(argv)
    profile = args.profile or "quick"
    cfg = PROFILES[profile]
    print(f"iterative_ppo --{profile}: {asdict(cfg)}")
    print("predictions (fixed before the run):")
    for k, v in PREDICTIONS.items():
        print(f"  [{k}] {v}")
    t0 = time.perf_counter()
    table = bound_check(cfg)
    t_bounds = time.perf_counter() - t0
    rows = table.rows()
    print(f"bound check: {cfg.bound_cases} random conversation MDPs, {t_bounds:.1f} s")
    for r in rows:
        print(f"  {r['bound']:14s} {r['kind']:8s} cases {r['cases']:6d}  violations {r['violations']}  "
              f"min scaled slack {r['min_scaled_slack']:.2e}  median slack {r['median_slack']:.2e}")
    t1 = time.perf_counter()
    insts = [cpi.funnel_conversation(cfg.n_stages, cfg.vocab, cfg.length, cfg.gamma, seed=i,
                                     entry=np.full(cfg.n_stages, 1.0 / cfg.n_stages)) for i in range(cfg.instances)]
    runs = [run_instance(tl, cfg, i) for i, tl in enumerate(insts)]
    t_arms = time.perf_counter() - t1
    qerr = [q_fit_errors(tl, cfg, i) for i, tl in enumerate(insts)]
    t_q = time.perf_counter() - t1 - t_arms
    summary = summarise(cfg, runs, qerr)
    verdict = verdicts(summary, rows)
    secs = time.perf_counter() - t0
    for name, v in verdict.items():
        print(f"verdict [{name}]: {v}")
    for r in summary["contrasts"] + summary["exploratory"]:
        print(f"  {r['contrast']}: {r['mean']:+.3f} ± {r['ci95']:.3f} (p_holm {r['p_holm']:.2g}, MDE {r['mde']:.3f})")
    for e, q in summary["q_fit"].items():
        print(f"  Q-fit slope {e}: {q['slope']:.3f} [{q['ci_lo']:.3f}, {q['ci_hi']:.3f}]")
    for k, v in summary["conversations_to_90pct"].items():
        print(f"  conversations to 90% of the gap, {k}: median {v['median']} ({v['censored']} censored)")
    print(f"total {secs:.1f} s (bounds {t_bounds:.1f}, arms {t_arms:.1f}, Q fit {t_q:.1f})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"profile": profile, "config": asdict(cfg), "predictions": PREDICTIONS, "verdicts": verdict,
            "seconds": {"total": secs, "bounds": t_bounds, "arms": t_arms, "q_fit": t_q},
            "date": time.strftime("%Y-%m-%d"), "runs": runs, **summary}
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    bounds_path = out.with_name(out.name + "_bounds.json")
    worst = {k: {"scaled_slack": v[0], "where": v[1]} for k, v in table.worst.items()}
    bounds_path.write_text(json.dumps({"config": {"cases": cfg.bound_cases, "seed": cfg.seed,
                                                  "tolerance": "1e-9 max(1, ||V*||)"},
                                       "seconds": t_bounds, "rows": rows, "violations": worst}, indent=1))
    write_csv(cfg, summary, runs, out.with_suffix(".csv"))
    plot(cfg, summary, runs, out.with_suffix(".png"))
    print(f"wrote {out}.png/.csv/.json and {bounds_path.name}")
    if table.worst:
        for name, (s, where) in table.worst.items():
            print(f"VIOLATED {name}: scaled slack {s:.3e} at {where}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
