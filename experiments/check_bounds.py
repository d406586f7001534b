"""Check every CPI improvement bound of cpi/bounds.py on thousands of random MDPs.

For each random case (garnets, thought trees, combination locks; several gamma including
0.999; policies random, deterministic or greedy-improving) and each mixture step alpha on a
log grid from 1e-3 to 1, the exact realised quantity is compared with the bound:

* ``pdl``            V^{pi_new}(D) - V^pi(D) == h E_{d_new} E_{pi_new}[A_pi]   (equality)
* ``kl_thm41``       realised gain >= K&L Theorem 4.1 lower bound          (gamma < 1)
* ``kl_cor42``       gain at K&L's step >= (1-gamma) Adv^2 / (8 R)         (gamma < 1)
* ``spi``            realised gain >= Pirotta et al. 2013 bound            (gamma < 1)
* ``spi_step``       gain at SPI's step >= its bound there                 (gamma < 1)
* ``finite_horizon`` realised gain >= finite-horizon K&L form              (episodic, H)
* ``fh_step``        gain at the finite-horizon step >= its guarantee      (episodic, H)
* ``spi_fh``         realised gain >= finite-horizon SPI form              (episodic, H)
* ``final``          V*(D) - V^pi(D) <= eps/(1-gamma) ||d_{pi*,D}/d_{pi,mu}||  (gamma < 1)
* ``final_mu``       ... <= eps/(1-gamma)^2 ||d_{pi*,D}/mu||                  (gamma < 1)

Printed per bound: cases, violations, min slack (bound side minus realised side, signed so
that negative = violated), min slack scaled by max(1, ||V||_inf), median tightness (lower
bounds: bound / realised over cases with a positive gain, 1 = tight; upper bounds: realised /
bound). A violation beyond ``1e-9 * max(1, ||V||_inf)`` (:func:`cpi.bounds.tolerance`, ``docs/cpi.md``) exits with 1.
The table goes to paper_figs/bounds_check.{csv,json}.

    python experiments/check_bounds.py                # default sweep, ~1 min on 2 cores
    python experiments/check_bounds.py --cases 20000  # larger sweep
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

import cpi
from cpi import bounds as B

ROOT = Path(__file__).resolve().parents[1]

LOWER = ["kl_thm41", "kl_cor42", "spi", "spi_step", "finite_horizon", "fh_step", "spi_fh"]
UPPER = ["final", "final_mu"]
ALL = ["pdl"] + LOWER + UPPER
GAMMAS = [0.0, 0.5, 0.9, 0.99, 0.999]


# ----------------------------------------------------------------------------- cases
def random_case(k: int, rng):
    """The k-th random MDP: cycles through garnets, small adversarial MDPs, trees, locks."""
    kind = ["garnet", "tiny", "tree", "lock", "garnet"][k % 5]
    seed = int(rng.integers(2**31))
    if kind == "garnet":
        S = int(rng.integers(2, 31))
        A = int(rng.integers(1, 6))
        b = int(rng.integers(1, min(S, 4) + 1))
        init = rng.dirichlet(np.ones(S)) if rng.random() < 0.5 else None
        return cpi.garnet(S, A, b, gamma=float(rng.choice(GAMMAS)), seed=seed, initial=init)
    if kind == "tiny":  # adversarial: 2 states, gamma near 1, deterministic, often 1 action
        A = int(rng.choice([1, 1, 2]))
        P = np.zeros((2, A, 2))
        P[np.arange(2)[:, None], np.arange(A)[None, :], rng.integers(0, 2, (2, A))] = 1.0
        R = rng.random((2, A)) * rng.choice([1.0, 10.0])
        return cpi.TabularMDP(P, R, float(rng.choice([0.99, 0.999])),
                              initial=rng.dirichlet(np.ones(2)), name="tiny")
    if kind == "tree":
        return cpi.thought_tree(int(rng.integers(1, 6)), int(rng.integers(2, 4)),
                                float(rng.random() * 0.5), p_success=float(rng.uniform(0.5, 1)),
                                p_recover=float(rng.uniform(0, 0.3)), seed=seed)
    H, A = int(rng.integers(1, 9)), int(rng.integers(2, 5))
    if rng.random() < 0.5:
        return cpi.combination_lock(H, A, seed=seed)
    return cpi.combination_lock(H, A, gamma=float(rng.choice([0.5, 0.9, 0.99])),
                                wrong="restart", seed=seed)


def random_policy(mdp, rng):
    kind = rng.integers(3)
    if kind == 0:
        pi = np.zeros((mdp.S, mdp.A))
        pi[np.arange(mdp.S), rng.integers(0, mdp.A, mdp.S)] = 1.0
        return pi
    pi = rng.dirichlet(np.ones(mdp.A) * (0.3 if kind == 1 else 1.0), size=mdp.S)
    return pi / pi.sum(1, keepdims=True)


# ----------------------------------------------------------------------------- checks
class Table:
    def __init__(self):
        self.slack = {b: [] for b in ALL}
        self.scaled = {b: [] for b in ALL}
        self.tight = {b: [] for b in ALL}
        self.worst = {}
        self.violations = {b: 0 for b in ALL}

    def add(self, name, bound, realised, tol, scale, where, lower=True):
        slack = realised - bound if lower else bound - realised
        if name == "pdl":
            slack = -abs(realised - bound)
        self.slack[name].append(slack)
        self.scaled[name].append(slack / scale)
        if name != "pdl":
            if lower and realised > tol:
                self.tight[name].append(bound / realised)
            elif not lower and bound > tol and np.isfinite(bound):
                self.tight[name].append(realised / bound)
        if slack < -tol:
            self.violations[name] += 1
        if slack < -tol and (name not in self.worst or slack / scale < self.worst[name][0]):
            self.worst[name] = (slack / scale, where)

    def rows(self):
        out = []
        for b in ALL:
            s = np.array(self.slack[b])
            t = np.array(self.tight[b])
            out.append({"bound": b, "cases": int(s.size),
                        "violations": self.violations[b],
                        "min_slack": float(s.min()) if s.size else float("nan"),
                        "min_slack_scaled": float(np.min(self.scaled[b])) if s.size else float("nan"),
                        "median_tightness": float(np.median(t)) if t.size else float("nan")})
        return out


def check_mdp(mdp, pi, pi2, alphas, table, where, rng):
    D = mdp.initial
    ev = cpi.evaluate(mdp, pi)
    adv = cpi.q_from_v(mdp, ev.V) - ev.V[:, None]  # (S, A)
    adv_s = B.state_advantage(pi2, adv)
    Adv, eps = float(ev.d @ adv_s), B.kl_eps(adv_s)
    dpi, dA = B.policy_distance(pi, pi2), B.advantage_span(adv_s)
    v0 = float(D @ ev.V)
    g = mdp.gamma
    H = mdp.max_length if g == 1.0 else None

    def gain(alpha):
        pn = (1 - alpha) * pi + alpha * pi2
        evn = cpi.evaluate(mdp, pn)
        return pn, evn, float(D @ evn.V) - v0, B.tolerance(np.r_[ev.V, evn.V]) * 1.0

    scale = max(1.0, float(np.abs(ev.V).max()))
    for alpha in alphas:
        pn, evn, real, tol = gain(alpha)
        s = max(1.0, float(np.abs(np.r_[ev.V, evn.V]).max()))
        # PDL for the pair (pi, pi_new): adv of pi_new over pi is alpha * adv_s
        table.add("pdl", B.pdl_gain(evn.d, alpha * adv_s, evn.horizon), real, tol, s, where)
        if g < 1.0:
            table.add("kl_thm41", B.kl_lower_bound(Adv, eps, alpha, g), real, tol, s, where)
            table.add("spi", B.spi_lower_bound(Adv, dpi, dA, alpha, g), real, tol, s, where)
        elif H is not None:
            table.add("finite_horizon", B.finite_horizon_lower_bound(ev.horizon * Adv, eps, alpha, H),
                      real, tol, s, where)
            table.add("spi_fh", B.spi_finite_horizon_lower_bound(ev.horizon * Adv, dpi, dA, alpha, H),
                      real, tol, s, where)
    if Adv > 0 and g < 1.0:
        rmax = max(float(mdp.R.max()), 0.0) - min(float(mdp.R.min()), 0.0) or 1.0
        if mdp.R.min() >= 0:  # K&L's corollary assumes rewards in [0, R]
            a = B.kl_step_size(Adv, g, rmax)
            _, _, real, tol = gain(a)
            table.add("kl_cor42", B.kl_guaranteed_gain(Adv, g, rmax), real, tol, scale, where)
        a = B.spi_step_size(Adv, dpi, dA, g)
        _, _, real, tol = gain(a)
        table.add("spi_step", B.spi_lower_bound(Adv, dpi, dA, a, g), real, tol, scale, where)
    if Adv > 0 and H is not None and g == 1.0:
        amax = cpi.advantage_bound(mdp)
        a = B.finite_horizon_step_size(ev.horizon * Adv, amax, H)
        _, _, real, tol = gain(a)
        table.add("fh_step", B.finite_horizon_guaranteed_gain(ev.horizon * Adv, amax, H), real,
                  tol, scale, where)
    if g < 1.0:  # final guarantee, restart mu with full support
        mu = rng.dirichlet(np.ones(mdp.S))
        Vs, pis = cpi.optimal(mdp)
        d_opt = cpi.occupancy(mdp, pis, D)
        ev_mu = cpi.evaluate(mdp, pi, mu)
        max_adv = float(ev_mu.d @ adv.max(axis=1))  # max over pi2 of Adv(pi2; pi, mu)
        sub = float(D @ (Vs - ev.V))
        tol = B.tolerance(np.r_[Vs, ev.V])
        table.add("final", B.final_guarantee(max_adv, g, d_opt, ev_mu.d), sub, tol, scale, where,
                  lower=False)
        table.add("final_mu", B.final_guarantee_mu(max_adv, g, d_opt, mu), sub, tol, scale, where,
                  lower=False)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=2000, help="random (MDP, pi, pi2) cases")
    ap.add_argument("--alphas", type=int, default=7, help="points of the alpha grid 1e-3..1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "paper_figs" / "bounds_check"),
                    help="path prefix of the CSV/JSON table ('' to skip writing)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    alphas = np.logspace(-3, 0, args.alphas)
    table = Table()
    t0 = time.perf_counter()
    for k in range(args.cases):
        mdp = random_case(k, rng)
        pi = random_policy(mdp, rng)
        if rng.random() < 0.5:  # CPI's pi2: greedy w.r.t. Q_pi
            pi2 = cpi.greedy(cpi.q_from_v(mdp, cpi.value(mdp, pi)))
        else:  # the bounds hold for any pi2
            pi2 = random_policy(mdp, rng)
        check_mdp(mdp, pi, pi2, alphas, table, f"case {k} ({mdp.name}, gamma={mdp.gamma})", rng)
    secs = time.perf_counter() - t0
    rows = table.rows()
    print(f"{args.cases} random cases, alpha grid {args.alphas} points in [1e-3, 1], "
          f"{secs:.1f} s")
    print(f"{'bound':16s} {'cases':>7s} {'viol':>5s} {'min slack':>12s} {'scaled':>12s} "
          f"{'median tight':>12s}")
    for r in rows:
        print(f"{r['bound']:16s} {r['cases']:7d} {r['violations']:5d} {r['min_slack']:12.3e} "
              f"{r['min_slack_scaled']:12.3e} {r['median_tightness']:12.4f}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out.with_suffix(".csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        meta = {"config": vars(args), "seconds": secs, "rows": rows,
                "violations": {k: {"scaled_slack": v[0], "where": v[1]} for k, v in table.worst.items()}}
        out.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    if table.worst:
        for name, (s, where) in table.worst.items():
            print(f"VIOLATED {name}: scaled slack {s:.3e} at {where}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
