"""Check every PG / TD bound of cpi.pg_bounds on many random instances; draw the figures.

For each result it prints the number of cases tried and the minimum slack (bound minus
realised value; for lower bounds, realised minus bound), absolute and relative to the bound's
scale. Exit status 1 if any slack is below ``-tol`` (a violation). Figures (PNG + CSV) go to
``paper_figs/``: pg_suboptimality.*, td_error.*, td_one_step.*; the run's config is saved as
``paper_figs/pg_td_check.json`` with the table.

    python experiments/check_pg_td.py            # ~1 minute on 2 shared cores
    python experiments/check_pg_td.py --full     # larger sweeps (several minutes)

One script read top to bottom (the four bound checks, then the three figures of the same bounds),
hence longer than the ~400 lines of a package module.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cpi import garnet, occupancy, optimal, value
from cpi import pg_bounds as B
from cpi.bounds import mismatch_coefficient
from cpi.pg import (direct_gradient, natural_pg, policy_iteration, projected_pg, reward_span,
                    soft_policy_iteration, softmax_gradient, softmax_pg, softmax_policy,
                    stationarity_gap)
from cpi.td import (expected_update, mean_path_td, mixing_time, one_step_improvement,
                    random_features, random_mrp, sampled_td, td_problem, td_q_estimate,
                    value_error_sq)


@dataclass
class Config:
    """What the check runs; saved beside the figures."""

    n_mdp: int = 40
    """Random garnet MDPs per PG result."""
    n_mrp: int = 200
    """Random MRPs (with random features) per TD lemma / mean-path result."""
    n_mc: int = 15
    """Random MRPs for each Monte-Carlo (sampled TD) result."""
    runs: int = 30
    """Independent sampled-TD runs averaged per MRP (the bounds are on expectations)."""
    T_pg: int = 60
    """Iterations of each optimiser."""
    tol: float = 1e-9
    """Violation threshold, relative to max(1, ||V||_inf)."""
    seed: int = 0
    """Base seed."""
    out: str = "paper_figs"
    """Where figures and CSVs go."""


class Tally:
    """Min slack per result; slack >= 0 means the bound held."""

    def __init__(self):
        self.rows = {}

    def add(self, name, slack, scale=1.0):
        slack = np.atleast_1d(np.asarray(slack, dtype=np.float64))
        scale = np.broadcast_to(np.maximum(np.abs(np.asarray(scale, dtype=np.float64)), 1e-300),
                                slack.shape)
        r = self.rows.setdefault(name, {"cases": 0, "min_slack": np.inf, "min_rel_slack": np.inf,
                                        "violations": 0})
        r["cases"] += slack.size
        r["min_slack"] = min(r["min_slack"], float(slack.min()))
        r["min_rel_slack"] = min(r["min_rel_slack"], float((slack / scale).min()))
        return slack

    def violations(self, tol):
        return {k: v for k, v in self.rows.items() if v["min_slack"] < -tol}


def rand_mdp(rng):
    S, A = int(rng.integers(4, 25)), int(rng.integers(2, 6))
    gamma = float(rng.choice([0.0, 0.5, 0.8, 0.9, 0.95]))
    return garnet(S, A, min(3, S), gamma=gamma, seed=int(rng.integers(2**31)))


# ============================================================================ policy gradient
def check_pg(cfg: Config, tally: Tally, rng):
    T = cfg.T_pg
    for _ in range(cfg.n_mdp):
        mdp = rand_mdp(rng)
        g, span = mdp.gamma, reward_span(mdp)
        Vs, pis = optimal(mdp)
        scale = max(1.0, np.abs(Vs).max())
        tol = cfg.tol * scale
        rho = rng.dirichlet(np.ones(mdp.S))
        # soft PI / PI contraction, per step
        alpha = float(rng.uniform(0.05, 1.0))
        tr = soft_policy_iteration(mdp, T, alpha, rho=rho)
        c = B.soft_pi_contraction(alpha, g)
        tally.add("soft-PI contraction (1-alpha(1-gamma))", c * tr.gap_inf[:-1] - tr.gap_inf[1:] + 0 * tol, scale)
        tr = policy_iteration(mdp, T, rho=rho)
        tally.add("PI contraction gamma", g * tr.gap_inf[:-1] - tr.gap_inf[1:], scale)
        # NPG rate and the approximate-PI step
        eta = float(np.exp(rng.uniform(np.log(0.05), np.log(50))))
        tr = natural_pg(mdp, T, eta, rho=rho)
        tally.add("NPG rate log|A|/(eta T)+span/((1-g)^2 T)",
                  B.npg_bound(np.arange(1, T + 1), eta, g, mdp.A, span) - tr.subopt[1:], scale)
        for tr in (tr, natural_pg(mdp, 15, 1e3 * 4.0 ** np.arange(15), rho=rho)):
            b = [B.approx_pi_step_bound(tr.gap_inf[t], g, tr.greedy_error[t]) for t in range(len(tr.steps))]
            tally.add("approx-PI step (NPG): g*gap+eps/(1-g)", np.array(b) - tr.gap_inf[1:], scale)
        # gradient domination and Lojasiewicz on random policies
        mu = rng.dirichlet(np.ones(mdp.S))
        d_star_rho = occupancy(mdp, pis, rho)
        for _ in range(3):
            theta = rng.normal(size=(mdp.S, mdp.A)) * rng.uniform(0.1, 4)
            pi = softmax_policy(theta)
            sub = rho @ (Vs - value(mdp, pi))
            stat = stationarity_gap(direct_gradient(mdp, pi, mu), pi)
            C = mismatch_coefficient(d_star_rho, mu)
            tally.add("gradient domination ||d*/mu||/(1-g)", B.gradient_domination(stat, C, g) - sub, scale)
            Cpi = mismatch_coefficient(d_star_rho, occupancy(mdp, pi, mu))
            tally.add("gradient domination ||d*/d_pi||", B.gradient_domination(stat, Cpi, g, True) - sub, scale)
            c_opt = pi[np.arange(mdp.S), np.argmax(pis, axis=1)].min()
            tally.add("softmax Lojasiewicz (lower bound on ||grad||)",
                      np.linalg.norm(softmax_gradient(mdp, theta, mu))
                      - B.softmax_gradient_domination(max(sub, 0), c_opt, mdp.S, Cpi), scale)
            # cited smoothness constants along a feasible direction
            u = rng.dirichlet(np.ones(mdp.A), size=mdp.S) - pi
            t = float(rng.uniform(1e-3, 1))
            Vmu = lambda p: mu @ value(mdp, p)  # noqa: E731
            lhs = abs(Vmu(pi + t * u) - Vmu(pi) - t * np.sum(direct_gradient(mdp, pi, mu) * u))
            tally.add("direct smoothness 2g|A|/(1-g)^3 [cited]",
                      B.direct_smoothness(g, mdp.A, span) * t * t * (u ** 2).sum() / 2 - lhs, scale)
            w = rng.normal(size=theta.shape)
            Vt = lambda th: mu @ value(mdp, softmax_policy(th))  # noqa: E731
            lhs = abs(Vt(theta + t * w) - Vt(theta) - t * np.sum(softmax_gradient(mdp, theta, mu) * w))
            tally.add("softmax smoothness 8/(1-g)^3 [cited]",
                      B.softmax_smoothness(g, span) * t * t * (w ** 2).sum() / 2 - lhs, scale)
        # softmax PG O(1/t) (rho = mu = initial) and projected PG (cited)
        d_star = occupancy(mdp, pis, mdp.initial)
        C0 = mismatch_coefficient(d_star, mdp.initial)
        tr = softmax_pg(mdp, T)
        tally.add("softmax PG 1/d_t >= 1/d_0 + sum c^2/(2 beta S C^2)",
                  (B.softmax_pg_bound(tr.subopt[0], tr.min_prob_opt[:T], g, mdp.S, C0, span) - tr.subopt)[1:], scale)
        tr = projected_pg(mdp, T)
        tally.add("projected PG 8 sqrt(g S A/T) C/(1-g)^3 [cited]",
                  B.projected_pg_bound(np.arange(1, T + 1), g, mdp.S, mdp.A, C0, span)
                  - np.minimum.accumulate(tr.subopt[1:]), scale)


# ============================================================================ TD
def rand_problem(rng, S_max=12):
    S = int(rng.integers(2, S_max))
    gamma = float(rng.choice([0.0, 0.5, 0.8, 0.9, 0.95]))
    m = random_mrp(S, gamma, seed=int(rng.integers(2**31)), branching=int(rng.integers(1, S + 1)))
    d = int(rng.integers(1, S + 1))
    return td_problem(m, random_features(S, d, int(rng.integers(2**31))))


def check_td(cfg: Config, tally: Tally, rng):
    for _ in range(cfg.n_mrp):
        p = rand_problem(rng)
        g = p.mrp.gamma
        for _ in range(5):
            theta = p.theta_star + rng.normal(size=p.theta_star.shape) * rng.uniform(0.01, 10)
            gbar, err2 = expected_update(p, theta), value_error_sq(p, theta)
            tally.add("TD lemma (th*-th).gbar >= (1-g)||dV||_D^2",
                      (p.theta_star - theta) @ gbar - B.td_inner_lemma(g, err2), max(err2, 1e-12))
            tally.add("TD lemma ||gbar|| <= 2||dV||_D",
                      B.td_norm_lemma(np.sqrt(err2), p.feature_norm) - np.linalg.norm(gbar), max(np.sqrt(err2), 1e-12))
        alpha = (1 - g) / 4
        theta0 = rng.normal(size=p.theta_star.shape) * 3
        T = 300
        th = mean_path_td(p, T, alpha, theta0)
        dist = ((th - p.theta_star) ** 2).sum(axis=1)
        ts = np.arange(T + 1)
        tally.add("mean-path TD exp(-omega(1-g)^2 T/4) rate",
                  (B.mean_path_td_bound(ts, alpha, g, p.omega, dist[0]) - dist)[1:], dist[0])
        avg = np.cumsum(th[:-1], axis=0) / ts[1:, None]
        tally.add("mean-path TD averaged 4||th*-th0||^2/((1-g)^2 T)",
                  B.mean_path_td_average_bound(ts[1:], alpha, g, dist[0]) - value_error_sq(p, avg), dist[0])


def _mc(err):
    """Mean over runs minus 3 standard errors: a violation is flagged only when the bound (on
    an expectation) is below this, i.e. the excess is statistically significant."""
    err = np.asarray(err, dtype=np.float64)  # (runs, ...)
    return err.mean(0) - 3.0 * err.std(0, ddof=1) / np.sqrt(err.shape[0])


def check_td_mc(cfg: Config, tally: Tally, rng):
    """Expectation bounds by Monte Carlo over ``runs`` runs: slack = bound - (mean - 3 se)."""
    for _ in range(cfg.n_mc):
        p = rand_problem(rng, S_max=10)
        g = p.mrp.gamma
        e0 = float(p.theta_star @ p.theta_star)
        cps = np.array([10, 100, 1000, 5000])
        seed = int(rng.integers(2**31))
        w = sampled_td(p, cps, schedule="weighted", n_runs=cfg.runs, seed=seed)
        tally.add("iid TD weighted average O(1/T) [MC]",
                  B.iid_td_weighted_average_bound(cps, g, p.omega, e0, p.sigma2) - _mc(w.err_avg), e0 + p.sigma2)
        dec = sampled_td(p, cps, schedule="decreasing", n_runs=cfg.runs, seed=seed + 1)
        tally.add("iid TD last iterate nu/(lam+T) [MC]",
                  B.iid_td_decreasing_bound(cps, g, p.omega, e0, p.sigma2)
                  - _mc(((dec.last - p.theta_star) ** 2).sum(-1)), e0 + p.sigma2)
        T = int(np.ceil(64 / (1 - g) ** 2 - 1e-9)) * 4
        c = sampled_td(p, [T], schedule="constant", n_runs=cfg.runs, seed=seed + 2)
        tally.add("iid TD constant 1/sqrt(T) averaged [MC]",
                  B.iid_td_constant_bound(T, g, e0, p.sigma2) - _mc(c.err_avg), e0 + p.sigma2)
        R = float(np.linalg.norm(p.theta_star))
        mk = sampled_td(p, [T], sampling="markov", radius=R, n_runs=cfg.runs, seed=seed + 3)
        tau = mixing_time(p.mrp.P, p.mrp.D, 1 / np.sqrt(T))
        tally.add("Markov projected TD [cited] [MC]",
                  B.markov_td_bound(T, g, e0, p.mrp.r.max() + 2 * R, tau) - _mc(mk.err_avg), e0 + 1)


def check_one_step(cfg: Config, tally: Tally, rng, rows):
    for i in range(cfg.n_mdp):
        mdp = rand_mdp(rng)
        if mdp.gamma == 0.0:
            continue
        pi_b = rng.dirichlet(np.ones(mdp.A), size=mdp.S)
        Vb = value(mdp, pi_b)
        scale = max(1.0, np.abs(Vb).max())
        SA = mdp.S * mdp.A
        cands = []
        for d in sorted({SA, max(1, SA // 2), max(1, SA // 4), 2, 1}):
            try:
                cands.append(("td", d, td_q_estimate(mdp, pi_b, random_features(SA, d, i))))
            except ValueError:  # state-action chain not irreducible for this garnet
                break
        Qb = mdp.R + mdp.gamma * (mdp.P @ Vb).reshape(mdp.S, mdp.A)
        for sig in (0.01, 0.1, 0.3, 1.0, 3.0):
            cands.append(("noise", sig, Qb + sig * scale * rng.uniform(-1, 1, Qb.shape)))
        for kind, par, Qh in cands:
            imp = one_step_improvement(mdp, pi_b, Qh)
            tally.add("one-step: gain >= (E_d' Delta - 2 eps)/(1-g)", imp.gain - imp.bound, scale)
            if 2 * imp.eps <= imp.min_adv_gap:
                tally.add("one-step: 2eps <= min Delta => V' >= V_b everywhere", imp.min_state_gain, scale)
            if 2 * imp.eps < imp.action_gap:
                tally.add("one-step: 2eps < action gap => exactly the PI step",
                          -abs(imp.gain - imp.pi_gain), scale)
            rows.append({"mdp": i, "kind": kind, "param": par, "eps": imp.eps,
                         "action_gap": imp.action_gap, "min_adv_gap": imp.min_adv_gap,
                         "gain": imp.gain, "pi_gain": imp.pi_gain, "bound": imp.bound})


# ============================================================================ figures
def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def fig_pg(out: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    mdp = garnet(20, 4, 3, gamma=0.8, seed=7)
    g, T, span = mdp.gamma, 2000, reward_span(mdp)
    d_star = occupancy(mdp, optimal(mdp)[1], mdp.initial)
    C = mismatch_coefficient(d_star, mdp.initial)
    ts = np.arange(T + 1)
    runs = {}
    extra = {0: projected_pg(mdp, T, 100 / B.direct_smoothness(g, mdp.A, span)).subopt,
             1: softmax_pg(mdp, T, 100 / B.softmax_smoothness(g, span)).subopt}
    tr = projected_pg(mdp, T)
    runs["projected PG (eta=1/beta)"] = (tr.subopt, np.r_[np.nan, B.projected_pg_bound(ts[1:], g, mdp.S, mdp.A, C, span)],
                                         "Agarwal et al. Thm 4.2 [cited] (bounds min_{s<=t})")
    tr = softmax_pg(mdp, T)
    runs["softmax PG (eta=1/beta)"] = (tr.subopt, B.softmax_pg_bound(tr.subopt[0], tr.min_prob_opt[:T], g, mdp.S, C, span),
                                       "1/d_t >= 1/d_0 + sum c_j^2/(2 beta S C^2)")
    tr = natural_pg(mdp, T, 1.0)
    runs["NPG (eta=1)"] = (tr.subopt, np.r_[np.nan, B.npg_bound(ts[1:], 1.0, g, mdp.A, span)],
                           "log|A|/(eta t) + span/((1-g)^2 t)")
    T = 150  # the geometric methods converge in far fewer iterations
    ts = np.arange(T + 1)
    tr = soft_policy_iteration(mdp, T, 0.2)
    runs["soft PI / CPI (alpha=0.2)"] = (tr.subopt, B.soft_pi_bound(tr.gap_inf[0], 0.2, g, T),
                                         "(1-alpha(1-g))^t ||V*-V^0||_inf")
    tr = policy_iteration(mdp, T)
    runs["policy iteration"] = (tr.subopt, B.soft_pi_bound(tr.gap_inf[0], 1.0, g, T), "g^t ||V*-V^0||_inf")
    fig, axes = plt.subplots(1, 5, figsize=(22, 4.2))
    rows = []
    for i, (ax, (name, (sub, bnd, lab))) in enumerate(zip(axes, runs.items())):
        ts = np.arange(sub.size)
        ax.semilogy(ts, np.maximum(sub, 1e-16), label="realised V*(rho)-V^t(rho)")
        ax.semilogy(ts, bnd, "--", label="bound: " + lab)
        if i in extra:
            ax.semilogy(ts, np.maximum(extra[i], 1e-16), ":", label="realised, eta=100/beta (outside the theorem)")
            for t in ts:
                rows.append({"method": name.split(" (")[0] + " (eta=100/beta)", "t": int(t),
                             "subopt": float(extra[i][t]), "bound": np.nan})
        ax.set_title(name)
        if i < 3:  # 1/t rates: log-log
            ax.set_xscale("symlog", linthresh=1)
        ax.set_xlabel("iteration t" + (" (symlog)" if i < 3 else ""))
        lo = np.nanmin(np.r_[sub, extra.get(i, sub)])
        ax.set_ylim(max(1e-12, lo / 10), 10 * np.nanmax(np.r_[sub, bnd]))
        ax.legend(fontsize=7)
        for t in ts:
            rows.append({"method": name, "t": int(t), "subopt": float(sub[t]), "bound": float(bnd[t])})
    axes[0].set_ylabel("sub-optimality (log scale)")
    fig.suptitle(f"{mdp.name}, gamma={g}: exact-gradient optimisers from the uniform policy")
    fig.tight_layout()
    fig.savefig(out / "pg_suboptimality.png", dpi=110)
    plt.close(fig)
    write_csv(out / "pg_suboptimality.csv", rows)


def fig_td(out: Path, runs: int):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    m = random_mrp(10, 0.9, seed=11)
    p = td_problem(m, random_features(10, 4, 12))
    g, e0 = m.gamma, float(p.theta_star @ p.theta_star)
    rows = []
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.5))
    # mean path
    T = 4000
    th = mean_path_td(p, T)
    ts = np.arange(T + 1)
    dist = ((th - p.theta_star) ** 2).sum(1)
    avg = value_error_sq(p, np.cumsum(th[:-1], axis=0) / ts[1:, None])
    ax = axes[0]
    ax.semilogy(ts, dist, label="||theta*-theta_T||^2")
    ax.semilogy(ts, B.mean_path_td_bound(ts, (1 - g) / 4, g, p.omega, e0), "--", label="bound exp(-omega(1-g)^2 T/4)")
    ax.semilogy(ts[1:], avg, label="||V*-V_avg||_D^2")
    ax.semilogy(ts[1:], B.mean_path_td_average_bound(ts[1:], (1 - g) / 4, g, e0), "--", label="bound 4||.||^2/((1-g)^2 T)")
    ax.set(title="mean-path TD, alpha=(1-gamma)/4", xlabel="T", ylabel="error")
    ax.legend(fontsize=7)
    for t in ts[1::40]:
        rows.append({"panel": "mean-path", "T": int(t), "err": float(dist[t]),
                     "bound": float(B.mean_path_td_bound(t, (1 - g) / 4, g, p.omega, e0)), "se": 0.0})
    # iid, weighted average and last iterate
    cps = np.unique(np.round(np.logspace(1, 5, 17)).astype(int))
    w = sampled_td(p, cps, schedule="weighted", n_runs=runs, seed=0)
    dec = sampled_td(p, cps, schedule="decreasing", n_runs=runs, seed=1)
    ax = axes[1]
    mw, sw = w.err_avg.mean(0), w.err_avg.std(0) / np.sqrt(runs)
    dl = ((dec.last - p.theta_star) ** 2).sum(-1)
    ax.errorbar(cps, mw, yerr=2 * sw, fmt="o-", ms=3, label="weighted avg: mean ||V*-V||_D^2 (+-2se)")
    ax.loglog(cps, B.iid_td_weighted_average_bound(cps, g, p.omega, e0, p.sigma2), "--", label="bound O(1/T) (weighted avg)")
    ax.errorbar(cps, dl.mean(0), yerr=2 * dl.std(0) / np.sqrt(runs), fmt="s-", ms=3, label="last iterate ||theta*-theta_T||^2")
    ax.loglog(cps, B.iid_td_decreasing_bound(cps, g, p.omega, e0, p.sigma2), "--", label="bound nu/(lam+T)")
    ax.set(xscale="log", yscale="log", title=f"i.i.d. TD, {runs} runs", xlabel="T", ylabel="error")
    ax.legend(fontsize=7)
    for k, t in enumerate(cps):
        rows.append({"panel": "iid-weighted", "T": int(t), "err": float(mw[k]), "se": float(sw[k]),
                     "bound": float(B.iid_td_weighted_average_bound(t, g, p.omega, e0, p.sigma2))})
        rows.append({"panel": "iid-last", "T": int(t), "err": float(dl.mean(0)[k]), "se": float(dl.std(0)[k] / np.sqrt(runs)),
                     "bound": float(B.iid_td_decreasing_bound(t, g, p.omega, e0, p.sigma2))})
    # constant step 1/sqrt(T): iid and Markov (projected)
    Ts = np.array([6400, 12800, 25600, 51200, 102400])
    R = float(np.linalg.norm(p.theta_star))
    ci, cm, bi, bm = [], [], [], []
    for T in Ts:
        ci.append(sampled_td(p, [T], schedule="constant", n_runs=max(runs // 3, 5), seed=int(T)).err_avg.mean())
        cm.append(sampled_td(p, [T], sampling="markov", radius=R, n_runs=max(runs // 3, 5), seed=int(T) + 1).err_avg.mean())
        bi.append(B.iid_td_constant_bound(T, g, e0, p.sigma2))
        bm.append(B.markov_td_bound(T, g, e0, m.r.max() + 2 * R, mixing_time(m.P, m.D, 1 / np.sqrt(T))))
        rows.append({"panel": "iid-constant", "T": int(T), "err": float(ci[-1]), "bound": float(bi[-1]), "se": np.nan})
        rows.append({"panel": "markov-projected", "T": int(T), "err": float(cm[-1]), "bound": float(bm[-1]), "se": np.nan})
    ax = axes[2]
    ax.loglog(Ts, ci, "o-", label="i.i.d., averaged iterate")
    ax.loglog(Ts, bi, "--", label="bound (||.||^2+2 sigma^2)/((1-g) sqrt T)")
    ax.loglog(Ts, cm, "s-", label="Markov chain, projected, averaged")
    ax.loglog(Ts, bm, ":", label="BRS Thm 3 form [cited, unconfirmed]")
    ax.set(title="constant step 1/sqrt(T)", xlabel="T", ylabel="mean ||V*-V_avg||_D^2")
    ax.legend(fontsize=7)
    fig.suptitle(f"TD(0), random MRP S=10, d=4, gamma={g}, omega={p.omega:.3g}, sigma^2={p.sigma2:.3g}")
    fig.tight_layout()
    fig.savefig(out / "td_error.png", dpi=110)
    plt.close(fig)
    write_csv(out / "td_error.csv", rows)


def fig_one_step(out: Path, rows):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    x = np.array([2 * r["eps"] / r["action_gap"] for r in rows])
    y = np.array([r["gain"] / r["pi_gain"] if r["pi_gain"] > 1e-12 else np.nan for r in rows])
    kind = np.array([r["kind"] for r in rows])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, mk in (("td", "o"), ("noise", "x")):
        sel = kind == k
        ax.scatter(x[sel], y[sel], marker=mk, s=14, alpha=0.7,
                   label="TD-estimated Q (random features, d varied)" if k == "td" else "Q^b + uniform noise")
    ax.axvline(1.0, color="k", ls="--", lw=1, label="2 eps = action gap (below: exactly PI)")
    ax.axhline(0.0, color="r", lw=1, label="no improvement")
    ax.set_xscale("log")
    ax.set(xlabel="2 ||Qhat - Q^b||_inf / action gap of Q^b",
           ylabel="gain of greedy(Qhat) / gain of exact PI step",
           title="one-step improvement over a base policy vs estimate error")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "td_one_step.png", dpi=110)
    plt.close(fig)
    write_csv(out / "td_one_step.csv", rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="larger sweeps (several minutes)")
    ap.add_argument("--smoke", action="store_true", help="tiny sweep (seconds; tests)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-figs", action="store_true", help="skip the figures")
    ap.add_argument("--out", default="paper_figs")
    a = ap.parse_args(argv)
    cfg = Config(seed=a.seed, out=a.out)
    if a.smoke:
        cfg = Config(n_mdp=4, n_mrp=10, n_mc=2, runs=4, T_pg=20, seed=a.seed, out=a.out)
    if a.full:
        cfg = Config(n_mdp=300, n_mrp=1000, n_mc=40, runs=100, T_pg=150, seed=a.seed, out=a.out)
    rng = np.random.default_rng(cfg.seed)
    tally, rows = Tally(), []
    t0 = time.time()
    for name, fn in (("PG", lambda: check_pg(cfg, tally, rng)), ("TD", lambda: check_td(cfg, tally, rng)),
                     ("TD-MC", lambda: check_td_mc(cfg, tally, rng)),
                     ("one-step", lambda: check_one_step(cfg, tally, rng, rows))):
        t = time.time()
        fn()
        print(f"[{name}: {time.time() - t:.1f}s]", file=sys.stderr)
    out = Path(cfg.out)
    out.mkdir(exist_ok=True)
    if not a.no_figs:
        t = time.time()
        fig_pg(out)
        fig_td(out, cfg.runs)
        fig_one_step(out, rows)
        print(f"[figures: {time.time() - t:.1f}s]", file=sys.stderr)
    w = max(len(k) for k in tally.rows)
    print(f"{'result':<{w}}  {'cases':>7}  {'min slack':>11}  {'min rel slack':>13}")
    for k, v in tally.rows.items():
        print(f"{k:<{w}}  {v['cases']:>7}  {v['min_slack']:>11.3e}  {v['min_rel_slack']:>13.3e}")
    bad = tally.violations(cfg.tol)
    print(f"total {time.time() - t0:.1f}s; violations: {len(bad)}")
    (out / "pg_td_check.json").write_text(json.dumps({"config": asdict(cfg), "results": tally.rows}, indent=1))
    for k in bad:
        print(f"VIOLATION: {k}: min slack {bad[k]['min_slack']:.3e}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
