"""The paper's headline, measured: samples to a target vs p_pi for RR, CARO and noisy resets.

Monte Carlo CPI (cpi.run_cpi, estimator="monte_carlo") runs from a fixed initial policy
on two families whose p_pi (the on-policy probability of reaching an improvable state,
``max_a A_pi(s,a) > tau``) is controlled:

* ``tree``: thought_tree(4, 3, p_error), uniform initial policy, errors fatal (p_success=1,
  p_recover=0), ``tau = 0.2`` (about: clean states with an erroneous candidate thought);
  p_pi grows with p_error but also varies with the tree's seed: p_pi is measured, not set.
* ``lock``: combination_lock(H, A, wrong="terminal"), uniform initial policy; with
  ``tau = lock_tau = 0.02`` only the last 4 states are improvable at the start
  (``A_pi(h, correct) = (2/3) 3^-(H-1-h)``), so p_pi = 3^-(H-4). A larger tau makes CARO stop
  (no improvable state left) before it halves the suboptimality: with a fixed tau CPI-CARO
  only reaches a tau-greedy policy, whose suboptimality compounds along the lock.

For every instance, reset (start = D only, random = RR, oracle = CARO, noisy(q)) and seed it records the
environment steps of the advantage rollouts until ``V*(D) - V^pi(D) <= frac * (V*(D) -
V^{pi0}(D))`` (a *relative* target: on trees the initial suboptimality itself scales with
p_pi, so an absolute target would be met by the initial policy at small p_pi), and the
realised gain of the first iteration (per-iteration improvement). Reset-locating steps
(rejection sampling for the oracle, on-policy simulation for RR) are counted separately:
the paper's CARO rate treats the oracle as free, so the headline slope uses rollout steps;
the slope with reset steps included is reported too.

Fits: least squares of log(samples) on log(p_pi) per (family, reset) over the runs that
reached the target, with a 95% CI from the t distribution; runs that hit the sample budget
are reported as censored (excluded from the fit, which biases RR's slope towards 0).

    python experiments/reset_complexity.py --smoke   # seconds (tests)
    python experiments/reset_complexity.py --quick   # a few minutes on 2 cores
    python experiments/reset_complexity.py           # more seeds and p values, larger budget
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

import cpi  # noqa: E402
from cpi.algorithms import CPIConfig, run_cpi  # noqa: E402
from cpi.resets import improvable_states, reach_probability  # noqa: E402


SIZES = {  # tree p_error values, tree seeds, lock lengths, CPI seeds, env-step budget per run
    "smoke": dict(p_errors=[0.05, 0.2], tree_seeds=1, locks=[4, 5], seeds=1, budget=2e5),
    "quick": dict(p_errors=[0.01, 0.02, 0.05, 0.1], tree_seeds=3, locks=[4, 5, 6, 7], seeds=4,
                  budget=3e6),
    "full": dict(p_errors=[0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2], tree_seeds=5,
                 locks=[4, 5, 6, 7, 8, 9, 10], seeds=10, budget=2e7),
}


def instances(family, size):
    if family == "tree":
        for pe in size["p_errors"]:
            for ts in range(size["tree_seeds"]):
                yield f"p_error={pe},tree_seed={ts}", cpi.thought_tree(4, 3, pe, seed=ts)
    else:
        for H in size["locks"]:
            yield f"H={H}", cpi.combination_lock(H, 3, seed=H)


def fit_slope(p, y):
    """OLS slope of log y on log p with a 95% t-interval; (slope, lo, hi, n)."""
    x, z = np.log(p), np.log(y)
    n = x.size
    if n < 3 or np.ptp(x) == 0:
        return float("nan"), float("nan"), float("nan"), n
    r = stats.linregress(x, z)
    t = stats.t.ppf(0.975, n - 2)
    return float(r.slope), float(r.slope - t * r.stderr), float(r.slope + t * r.stderr), n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sweep (a few minutes, 2 cores)")
    ap.add_argument("--smoke", action="store_true", help="tiny sweep (seconds; tests)")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per (instance, reset)")
    ap.add_argument("--n-states", type=int, default=30, help="reset states per MC batch")
    ap.add_argument("--step", default="spi", choices=["spi", "kakade_langford", "fixed"])
    ap.add_argument("--alpha", type=float, default=None, help="fixed step (with --step fixed)")
    ap.add_argument("--tau", type=float, default=0.2, help="improvability threshold (trees)")
    ap.add_argument("--lock-tau", type=float, default=0.02, help="threshold on locks")
    ap.add_argument("--q", type=float, default=0.5, help="noisy localizer accuracy")
    ap.add_argument("--frac", type=float, default=0.5, help="target: suboptimality <= frac * initial")
    ap.add_argument("--budget", type=float, default=None, help="max env steps per run")
    ap.add_argument("--out", default=str(ROOT / "paper_figs" / "reset_complexity"))
    args = ap.parse_args(argv)
    size = SIZES["smoke" if args.smoke else "quick" if args.quick else "full"]
    seeds = args.seeds or size["seeds"]
    budget = int(args.budget or size["budget"])
    resets = ["start", "random", "noisy", "oracle"]
    rows = []
    t0 = time.perf_counter()
    for family in ["tree", "lock"]:
        tau = args.tau if family == "tree" else args.lock_tau
        for name, mdp in instances(family, size):
            pi0 = mdp.uniform_policy()
            p0 = reach_probability(mdp, pi0, improvable_states(mdp, pi0, tau))
            if p0 <= 0:
                continue
            for reset in resets:
                for seed in range(seeds):
                    cfg = CPIConfig(reset=reset, tau=tau, q=args.q, step=args.step,
                                    alpha=args.alpha, estimator="monte_carlo",
                                    n_states=args.n_states, epsilon=1e-9, on_small_adv="continue",
                                    max_iter=100000, max_samples=budget, track_p=False,
                                    seed=1000 * seed + 17)
                    vstar = mdp.initial @ cpi.optimal(mdp)[0]
                    sub0 = vstar - mdp.initial @ cpi.value(mdp, pi0)
                    cfg.target_suboptimality = args.frac * sub0
                    res = run_cpi(mdp, cfg, pi0=pi0)
                    t = res.table()
                    ro = int(t["rollout_steps"].sum()) if len(res.history) else 0
                    rs = int(t["reset_steps"].sum()) if len(res.history) else 0
                    rows.append({"family": family, "instance": name, "reset": reset, "seed": seed,
                                 "p_pi": p0, "tau": tau, "initial_subopt": sub0,
                                 "reached": res.stop == "target", "iterations": len(res.history),
                                 "rollout_steps": ro, "total_steps": ro + rs,
                                 "first_gain": float(t["realised"][0]) if len(res.history) else 0.0,
                                 "first_gain_rel": float(t["realised"][0]) / sub0 if len(res.history) else 0.0,
                                 "stop": res.stop})
            print(f"{time.perf_counter() - t0:7.1f}s {family} {name} p_pi={p0:.3g}", flush=True)

    fits = []
    for family in ["tree", "lock"]:
        for reset in resets:
            sel = [r for r in rows if r["family"] == family and r["reset"] == reset]
            ok = [r for r in sel if r["reached"]]
            p = np.array([r["p_pi"] for r in ok])
            for metric in ["rollout_steps", "total_steps"]:
                s, lo, hi, n = fit_slope(p, np.array([max(r[metric], 1) for r in ok]))
                fits.append({"family": family, "reset": reset, "quantity": metric, "slope": s,
                             "ci_lo": lo, "ci_hi": hi, "runs_fitted": n,
                             "censored": len(sel) - len(ok)})
            pg = np.array([r["p_pi"] for r in sel if r["first_gain_rel"] > 0])
            g = np.array([r["first_gain_rel"] for r in sel if r["first_gain_rel"] > 0])
            s, lo, hi, n = fit_slope(pg, g)
            fits.append({"family": family, "reset": reset, "quantity": "first_gain_rel",
                         "slope": s, "ci_lo": lo, "ci_hi": hi, "runs_fitted": n,
                         "censored": len(sel) - n})
    secs = time.perf_counter() - t0
    print(f"\n{len(rows)} runs in {secs:.0f} s; budget {budget:.0e} env steps per run; "
          f"step={args.step}, n_states={args.n_states}, q={args.q}, target frac={args.frac}")
    print(f"{'family':6s} {'reset':7s} {'quantity':15s} {'slope':>7s} {'95% CI':>18s} "
          f"{'runs':>5s} {'censored':>8s}")
    for f in fits:
        print(f"{f['family']:6s} {f['reset']:7s} {f['quantity']:15s} {f['slope']:7.2f} "
              f"[{f['ci_lo']:6.2f}, {f['ci_hi']:6.2f}] {f['runs_fitted']:5d} {f['censored']:8d}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(str(out) + "_fits.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(fits[0]))
        w.writeheader()
        w.writerows(fits)
    Path(str(out) + ".json").write_text(json.dumps({"config": {**vars(args), "seeds": seeds,
                                                               "budget": budget},
                                                    "seconds": secs, "fits": fits}, indent=1))
    plot(rows, fits, resets, out.with_suffix(".png"), budget)
    return 0


def plot(rows, fits, resets, path, budget):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    colors = {"random": "tab:red", "noisy": "tab:purple", "oracle": "tab:green", "start": "tab:gray"}
    label = {"random": "RR (random reset)", "noisy": "noisy localizer", "oracle": "CARO (oracle)",
             "start": "start only (no reset)"}
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5))
    for j, family in enumerate(["tree", "lock"]):
        ax, ax2 = axes[0, j], axes[1, j]
        for reset in resets:
            sel = [r for r in rows if r["family"] == family and r["reset"] == reset]
            ok = [r for r in sel if r["reached"]]
            cen = [r for r in sel if not r["reached"]]
            fit = next(f for f in fits if f["family"] == family and f["reset"] == reset
                       and f["quantity"] == "rollout_steps")
            ax.scatter([r["p_pi"] for r in ok], [r["rollout_steps"] for r in ok], s=14,
                       alpha=0.6, color=colors[reset],
                       label=f"{label[reset]}: slope {fit['slope']:.2f} "
                             f"[{fit['ci_lo']:.2f}, {fit['ci_hi']:.2f}]")
            if cen:
                ax.scatter([r["p_pi"] for r in cen], [budget] * len(cen), marker="^", s=22,
                           color=colors[reset], alpha=0.6)
            if ok and np.isfinite(fit["slope"]):
                p = np.array([r["p_pi"] for r in ok])
                y = np.array([r["rollout_steps"] for r in ok])
                xs = np.geomspace(p.min(), p.max(), 20)
                c = np.mean(np.log(y)) - fit["slope"] * np.mean(np.log(p))
                ax.plot(xs, np.exp(c) * xs ** fit["slope"], color=colors[reset])
            g = [r for r in sel if r["first_gain_rel"] > 0]
            gf = next(f for f in fits if f["family"] == family and f["reset"] == reset
                      and f["quantity"] == "first_gain_rel")
            ax2.scatter([r["p_pi"] for r in g], [r["first_gain_rel"] for r in g], s=14, alpha=0.6,
                        color=colors[reset], label=f"{label[reset]}: slope {gf['slope']:.2f}")
        for a in (ax, ax2):
            a.set_xscale("log")
            a.set_yscale("log")
            a.set_xlabel(r"$p_\pi$ (on-policy probability of reaching an improvable state)")
            a.legend(fontsize=8)
            a.grid(alpha=0.3, which="both")
        ax.set_ylabel("rollout env steps to halve the suboptimality")
        ax.set_title(f"{family}: samples to target (triangles: censored at budget)")
        ax2.set_ylabel("first-iteration gain / initial suboptimality")
        ax2.set_title(f"{family}: per-iteration improvement")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
