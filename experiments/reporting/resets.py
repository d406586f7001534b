"""Report topic: reset distributions in tabular CPI (RR vs CARO against p_pi)."""
from __future__ import annotations

from .common import ci_overlaps, fmt

FILES = {"rc": "reset_complexity.json"}


def slope(fits, family, reset, quantity="rollout_steps"):
    return next((f for f in fits if f["family"] == family and f["reset"] == reset
                 and f["quantity"] == quantity), None)


def slope_verdict(rr: dict, caro: dict) -> str:
    """Rule: reproduced if RR's CI meets [-2.5, -1.5] and CARO's meets [-0.5, 0.5]; partly if one does or
    the RR - CARO gap lies in [-2.5, -1.2]; else not reproduced."""
    rr_ok, ca_ok = ci_overlaps(rr, -2.5, -1.5), ci_overlaps(caro, -0.5, 0.5)
    gap = rr["slope"] - caro["slope"]
    return ("reproduced" if rr_ok and ca_ok else
            "partly reproduced" if (rr_ok or ca_ok or -2.5 <= gap <= -1.2) else "not reproduced")


def claims(d) -> list[str]:
    rc = d["rc"]
    if rc is None:
        return []
    fits = rc["fits"]
    parts = []
    for fam in ("tree", "lock"):
        rr, ca = slope(fits, fam, "random"), slope(fits, fam, "oracle")
        if rr is None or ca is None:
            continue
        gap = rr["slope"] - ca["slope"]
        parts.append(f"{fam}: RR slope {fmt(rr['slope'], 2)} [{fmt(rr['ci_lo'], 2)}, {fmt(rr['ci_hi'], 2)}], "
                     f"CARO {fmt(ca['slope'], 2)} [{fmt(ca['ci_lo'], 2)}, {fmt(ca['ci_hi'], 2)}], "
                     f"gap {gap:+.2f} -> {slope_verdict(rr, ca)}")
    return ["* **Sample complexity RR ~ 1/p^2 vs CARO ~ 1 (slopes -2 and 0 against p_pi)** - "
            + "; ".join(parts) + ". Rule: reproduced if RR's CI meets [-2.5, -1.5] and CARO's meets "
            "[-0.5, 0.5]; partly if one does or the RR-CARO gap lies in [-2.5, -1.2]. The O(.) rates hide "
            "factors that vary with p_pi in these families (on trees a larger p_pi also means more "
            "improvable states to fix; on locks p_pi is set by the lock length H, which also enters the "
            "H^2 factor), so the per-method slopes mix p_pi with those factors; see "
            "`reset_complexity_fits.csv` for the slopes with reset-locating steps included."]


def section(d) -> list[str]:
    rc = d["rc"]
    lines = ["## Reset distributions: samples vs p_pi (CPI-RR vs CPI-CARO)", ""]
    if rc is None:
        return lines + ["Not run.", ""]
    lines += ["Monte-Carlo CPI from a uniform policy; rollout environment steps until the suboptimality "
              "halves, fitted as log(steps) ~ slope * log(p_pi) (95% t-interval; censored runs hit the "
              f"budget of {rc['config']['budget']:.0e} steps and are left out of the fit).", "",
              "| family | reset | slope | 95% CI | runs fitted | censored |", "|---|---|---:|---|---:|---:|"]
    for f in rc["fits"]:
        if f["quantity"] == "rollout_steps":
            lines.append(f"| {f['family']} | {f['reset']} | {fmt(f['slope'], 2)} | [{fmt(f['ci_lo'], 2)}, "
                         f"{fmt(f['ci_hi'], 2)}] | {f['runs_fitted']} | {f['censored']} |")
    lines.append("")
    return lines


def captions(d, figs) -> list[str]:
    cap = []
    if (figs / "reset_complexity.png").exists():
        cap.append("* `reset_complexity.png` (reset_complexity.csv, reset_complexity_fits.csv) - Monte-Carlo CPI: "
                   "rollout env steps to halve the suboptimality vs p_pi (log-log, fitted slopes with 95% CIs), and "
                   "first-iteration improvement, for start / RR / noisy / CARO resets on thought trees and "
                   "combination locks.")
    if d["rc"]:
        cap.append("  Slopes (rollout steps): " + ", ".join(
            f"{f['family']}/{f['reset']} {fmt(f['slope'], 2)}" for f in d["rc"]["fits"]
            if f["quantity"] == "rollout_steps"))
    return cap
