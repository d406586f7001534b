"""Report topic: the reset theorem (CPI-RR vs CPI-CARO against p_pi) on the gated trap.

Three quantities, each with its own predicted slope (docs/resets.md): (a) per-iteration samples
(theorem: RR -2, CARO 0), (b) exact first-iteration gain with the Kakade-Langford step (RR +2,
CARO +1), (c) end-to-end rollouts to half the initial suboptimality with theorem-sized batches
(RR -3, CARO 0). Trees and locks, when present (``--full``), are stress tests.
"""
from __future__ import annotations

from .common import fmt, missing

FILES = {"rc": "reset_complexity.json"}
MAX_HALF_WIDTH = 0.5
EXACT_TOL = 0.05
QUANTITIES = {  # quantity -> (metric of the headline fit, claim title)
    "per_iteration_samples": ("n", "Per-iteration sample size RR ~ 1/p^2 vs CARO ~ 1 (slopes -2 and 0)"),
    "first_gain": ("n", "Per-iteration improvement RR ~ p^2 vs CARO ~ p (exact first-iteration gain, "
                        "slopes +2 and +1)"),
    "samples_to_target": ("rollouts", "End to end with theorem-sized batches and a relative target: "
                                      "RR ~ p^-3 vs CARO ~ p^0"),
}


def slope_verdict(f: dict) -> str:
    """Rule (fixed before the run): "reproduced" if the 95% CI contains the predicted slope, excludes
    the rival's slope and is no wider than +-0.5; "not reproduced" if it is that narrow and excludes
    the predicted slope; otherwise "not resolved at this size"."""
    lo, hi, pred, rival = f.get("ci_lo"), f.get("ci_hi"), f.get("predicted_slope"), f.get("rival_slope")
    if any(missing(v) for v in (lo, hi, pred)):
        return "not resolved at this size"
    narrow = (hi - lo) / 2 <= MAX_HALF_WIDTH
    has_pred = lo <= pred <= hi
    has_rival = not missing(rival) and lo <= rival <= hi
    if has_pred and not has_rival and narrow:
        return "reproduced"
    if narrow and not has_pred:
        return "not reproduced"
    return "not resolved at this size"


def exact_verdict(f: dict) -> str:
    """Exact quantities (no sampling noise): "reproduced" if |slope - predicted| <= 0.05."""
    s, pred = f.get("slope"), f.get("predicted_slope")
    if missing(s) or missing(pred):
        return "not resolved at this size"
    return "reproduced" if abs(s - pred) <= EXACT_TOL else "not reproduced"


def pick(fits, quantity, reset, step="kakade_langford", family="gated_trap", metric=None):
    metric = metric or QUANTITIES[quantity][0]
    return next((f for f in fits if f["family"] == family and f["quantity"] == quantity
                 and f["metric"] == metric and f["reset"] == reset and f["step"] == step
                 and "slope" in f), None)


def theory_note(f) -> str:
    """Whether the theorem's asymptotic slope (not the design's prediction) lies in the CI."""
    th = f.get("theory_slope")
    if missing(th) or missing(f.get("ci_lo")) or abs(th - f["predicted_slope"]) < 1e-9:
        return ""
    inside = f["ci_lo"] <= th <= f["ci_hi"]
    return f"; the theorem's asymptotic {fmt(th, 1)} lies {'inside' if inside else 'outside'} the CI"


def _one(f, name):
    if f is None:
        return f"{name} not run"
    return (f"{name} {fmt(f['slope'], 2)} [{fmt(f['ci_lo'], 2)}, {fmt(f['ci_hi'], 2)}] "
            f"(predicted {fmt(f['predicted_slope'], 2)}{theory_note(f)}) -> {f['verdict']}")


def claims(d) -> list[str]:
    rc = d["rc"]
    if rc is None:
        return []
    fits, out = rc["fits"], []
    for q, (metric, title) in QUANTITIES.items():
        parts = [_one(pick(fits, q, r), n) for r, n in (("random", "RR"), ("oracle", "CARO"),
                                                          ("noisy", "noisy(q=0.5)"))]
        out.append(f"* **{title}** - gated trap, Kakade-Langford step, slopes against p_pi with 95% CIs: "
                   + "; ".join(parts) + ".")
    out[0] += (" Reference: the exact CPI step under the same reset (population advantages); success = the "
               "sampled step gains at least half of it, with probability >= 0.9.")
    out.append(f"  Rule: {rc['rule']} The design prediction is the slope of a per-instance prediction computed "
               "before the run (normal approximation for (a), analytic for (b), exact-CPI iterations x "
               "theorem-sized batch for (c)); the theorem's asymptotic rates are listed beside it in the "
               "tables below.")
    return out


ORDER = {"random": 0, "oracle": 1, "noisy": 2, "kakade_langford": 0, "spi": 1, "n": 0, "rollouts": 0,
         "total_steps": 1}


def _table(fits, quantity, family="gated_trap"):
    rows = ["| reset | step | metric | slope | 95% CI | design prediction | theorem | rival | points (censored) | verdict |",
            "|---|---|---|---:|---|---:|---:|---|---:|---|"]
    sel = [f for f in fits if f["family"] == family and f["quantity"] == quantity and "slope" in f
           and f["metric"] in ORDER]  # rollout_steps (= rollouts x a fixed length here) stays in the CSV
    for f in sorted(sel, key=lambda f: (ORDER[f["metric"]], ORDER[f["reset"]], ORDER[f["step"]])):
        rows.append(f"| {f['reset']} | {f['step']} | {f['metric']} | {fmt(f['slope'], 2)} | "
                    f"[{fmt(f['ci_lo'], 2)}, {fmt(f['ci_hi'], 2)}] | {fmt(f['predicted_slope'], 2)} | "
                    f"{fmt(f['theory_slope'], 1)} | {f['rival']} ({fmt(f['rival_slope'], 1)}) | "
                    f"{f['n']} ({f['n_censored']}) | {f['verdict']} |")
    return rows + [""]


def section(d) -> list[str]:
    rc = d["rc"]
    lines = ["## The reset theorem on the gated trap (CPI-RR vs CPI-CARO against p_pi)", ""]
    if rc is None:
        return lines + ["Not run.", ""]
    des, mde = rc["design"], rc["mde"]
    lines += [f"`cpi.gated_trap(p)`: the root enters, with probability p, a branch with one improvable state "
              f"({des['n_actions']} actions, one good: Bernoulli({des['r_good']}) vs Bernoulli({des['r_bad']}) "
              f"payouts) at depth {des['gate_depth']}, else an isomorphic safe branch; every episode lasts "
              f"{des['depth'] + 1} steps; tau = {des['tau']}; p_pi = p exactly; one MDP per p "
              f"({len(rc['sizes']['ps'])} in (a), (b); {len(rc['sizes']['ps_c'])} in (c)). Minimum detectable "
              f"slope in (a) (80% power, 5% level, pilot sd of log n* {mde['pilot_sd_log_n']}): "
              f"{fmt(mde['per_iteration_slope'], 2)} for one slope, {fmt(mde['per_iteration_contrast'], 2)} "
              f"for RR - CARO.", "",
              f"(a) Per-iteration samples: smallest n (reset states per batch) with P(sampled gain >= "
              f"{des['frac']} x exact gain) >= {des['level']}, {rc['sizes']['trials']} trials per grid point.", ""]
    lines += _table(rc["fits"], "per_iteration_samples")
    spi = rc.get("spi_alpha_ratio") or {}
    if spi:
        lines += ["(a) uses the Kakade-Langford step only: a sampled SPI step takes Delta_A from the batch's "
                  "extreme per-state estimates, so its alpha settles at a fixed fraction of the exact SPI step's "
                  "whatever n (measured median ratio at p = 0.4: " + ", ".join(
                      f"{r} " + ", ".join(f"n={n}: {fmt(v, 2)}" for n, v in d.items()) for r, d in spi.items())
                  + "), below 1/2, so 'half the exact gain' is never reached.", ""]
    lines += ["(b) Exact first-iteration gain from the uniform policy (no sampling; start gains 0 at every p).", ""]
    lines += _table(rc["fits"], "first_gain")
    runs = [r for r in rc.get("runs", []) if "family" not in r]
    stops = {}
    for r in runs:
        stops[r["stop"]] = stops.get(r["stop"], 0) + 1
    lines += [f"(c) Monte-Carlo CPI to {des['target']} x the initial suboptimality, n = ceil(predicted n*) per "
              f"batch, {rc['sizes']['seeds']} seeds per instance (geometric mean; an instance with a censored "
              f"seed is a censored point). Runs by stop reason: "
              + ", ".join(f"{k} {v}" for k, v in sorted(stops.items())) + ".", ""]
    lines += _table(rc["fits"], "samples_to_target")
    lines += ["total_steps adds the environment steps spent locating reset states (the theorem counts the "
              "oracle as free; its rejection sampler costs ~L/p steps per state, hence CARO's slope near -1 there). "
              "SPI's design prediction uses exact-SPI iteration counts; Monte-Carlo SPI runs need several times "
              "more iterations (its alpha is scaled down as in (a)), by a factor that varies with p for noisy.", ""]
    if any(f["family"] in ("tree", "lock") for f in rc["fits"]):
        lines += ["Stress tests (thought trees and locks with Bernoulli leaves; p also moves depth, the number "
                  "of improvable states and H; fixed batch of 30 in the end-to-end runs):", ""]
        for fam in ("tree", "lock"):
            for q in QUANTITIES:
                lines += [f"{fam}, {q}:", ""] + _table(rc["fits"], q, fam)
    lines.append(f"Run time of the step: {rc['seconds']:.0f} s wall clock ({rc['profile']} profile; timings vary with the machine's load).")
    return lines + [""]


def captions(d, figs) -> list[str]:
    cap = []
    if (figs / "reset_complexity.png").exists():
        cap.append("* `reset_complexity.png` (reset_complexity.csv, reset_complexity_fits.csv, reset_complexity.json) - "
                   "the reset theorem on the gated trap, against p_pi (log-log): (a) per-iteration samples for one "
                   "CPI step to gain half the exact step with probability 0.9; (b) exact first-iteration gain "
                   "(Kakade-Langford filled, SPI open); (c) rollout trajectories of Monte-Carlo CPI to half the "
                   "initial suboptimality with theorem-sized batches. Lines: fitted slopes (95% CIs in the legend); "
                   "dashed: the design's prediction; triangles: censored.")
    if d["rc"]:
        cap.append("  Slopes (K&L): " + "; ".join(
            f"({k}) " + ", ".join(f"{lab} {fmt(f['slope'], 2)}" for r, lab in (("random", "RR"), ("oracle", "CARO"))
                                  if (f := pick(d["rc"]["fits"], q, r)) is not None)
            for k, q in zip("abc", QUANTITIES)))
    return cap
