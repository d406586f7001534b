"""Report topic: Iterative PPO (Jiang et al. 2025) in the tabular lab (``experiments/iterative_ppo.py``)."""
from __future__ import annotations

from .common import ci_overlaps, fmt, missing

FILES = {"ippo": "iterative_ppo.json", "ippob": "iterative_ppo_bounds.json"}

ARM_NAMES = {"pi": "policy iteration (exact Q, online)", "exact_npg": "Iterative PPO, exact Q, 10 token NPG steps",
             "direct_npg": "direct token NPG on the multi-turn return (exact gradient)",
             "reinforce": "direct token REINFORCE on the multi-turn return"}


def reduction_verdict(max_abs_diff: float) -> str:
    """Rule: reproduced if exact-Q, beta = 0 Iterative PPO matches policy iteration to 1e-9 at every iteration."""
    return "reproduced" if not missing(max_abs_diff) and max_abs_diff <= 1e-9 else "not reproduced"


def improvement_verdict(min_state_gain: float, violations: int) -> str:
    """Rule: reproduced if no state's value drops by more than 1e-9 under the token-level PPO stand-in and the
    bound check has no violation."""
    return "reproduced" if min_state_gain >= -1e-9 and violations == 0 else "not reproduced"


def contrast_verdict(contrasts: list) -> str:
    """Rule: reproduced if every contrast is positive and significant after Holm; not reproduced if none is, or
    one is significantly negative; partly reproduced otherwise."""
    pos = sum(c["significant"] and c["mean"] > 0 for c in contrasts)
    neg = any(c["significant"] and c["mean"] < 0 for c in contrasts)
    if contrasts and pos == len(contrasts) and not neg:
        return "reproduced"
    return "not reproduced" if pos == 0 or neg else "partly reproduced"


def slope_verdict(fits: dict) -> str:
    """Rule: reproduced if the 95% CI of every estimator's log-log slope of RMSE vs N meets [-0.6, -0.4]."""
    ok = [ci_overlaps(f, -0.6, -0.4) for f in fits.values()]
    return "reproduced" if ok and all(ok) else ("partly reproduced" if any(ok) else "not reproduced")


def iterations_to_close(curve: list, tol: float = 1e-9):
    """First iteration at which a fraction-of-the-gap curve reaches 1 (within ``tol``), or "more than K"."""
    return next((k for k, v in enumerate(curve) if v >= 1 - tol), f"more than {len(curve) - 1}")


def bounds_verdict(violations: int) -> str:
    """Rule: a bound or identity is reproduced when no random case violates it (tolerance 1e-9 max(1, ||V*||))."""
    return "reproduced" if violations == 0 else "NOT reproduced"


def _pm(m, ci, digits=3):
    return f"{fmt(m, digits)} ± {fmt(ci, digits)}"


def claims(d) -> list[str]:
    r, b = d["ippo"], d["ippob"]
    if r is None:
        return []
    viol = sum(x["violations"] for x in b["rows"]) if b else 0
    n_eval = sum(x["cases"] for x in b["rows"]) if b else 0
    red = {x["bound"]: x for x in b["rows"]} if b else {}
    cfg = r["config"]
    out = [f"* **Multi-turn RL reduces to single-turn problems with Q^{{pi_k}} as the reward model; their exact "
           f"solution is a policy-improvement step (Jiang et al. 2025, Iterative PPO)** - "
           f"{reduction_verdict(r['reduction_max_abs_diff'])}: with the exact Q and the exact beta = 0 maximiser "
           f"(computed token by token) Iterative PPO equals policy iteration step for step (max |V difference| "
           f"{r['reduction_max_abs_diff']:.1e} over {cfg['instances']} funnels x {cfg['iterations']} iterations); on "
           f"{b['config']['cases'] if b else 'n/a'} random conversation MDPs the multi-turn gain equals the "
           f"performance-difference sum of single-turn gains (min slack "
           f"{red.get('reduction_pdl', {}).get('min_scaled_slack', float('nan')):.1e}) and the beta > 0 maximiser "
           "equals pi_k exp(Q/beta)/Z. Rule: reproduced if the difference is <= 1e-9."]
    out.append(f"* **Solving the single-turn problem with token-level PPO is a policy improvement step** - "
               f"{improvement_verdict(r['improvement_min_state_gain'], viol)} for the tabular stand-in (exact "
               "token-level NPG steps on the single-turn MDP, not PPO's clipped sampled surrogate): min over states "
               f"and iterations of V^{{k+1}} - V^k = {r['improvement_min_state_gain']:.1e}; the reduction's "
               "identities and "
               f"bounds: {bounds_verdict(viol)} ({viol} violations in {n_eval} evaluations, table below). Rule: "
               "reproduced if no value drops by more than 1e-9 and no bound is violated.")
    c = r["contrasts"]
    parts = "; ".join(f"{x['contrast']} {x['mean']:+.3f} ± {x['ci95']:.3f} (Holm p {x['p_holm']:.1g})" for x in c)
    out.append(f"* **Iterative PPO, batch online, lies between fully online and fully offline RL** - "
               f"{contrast_verdict(c)} on {cfg['instances']} sales funnels (fraction of the gap V* - V^pi0 closed "
               f"after {cfg['iterations']} iterations, paired by instance): {parts}. Rule: reproduced if all four "
               "contrasts are positive and significant after Holm. Fully online exact policy iteration closes the "
               f"gap in {iterations_to_close(r['curves']['pi']['mean'])} iterations; offline improvement from pi_0's "
               "data cannot pass one policy-iteration step from pi_0 "
               f"({fmt(r['curves']['pi']['mean'][1], 3)} of the gap).")
    fits = r["q_fit"]
    out.append("* **Q^{pi_k} can be fitted from logged conversations (Monte Carlo, TD)** - "
               f"{slope_verdict(fits)}: RMSE ~ N^slope with slope "
               + ", ".join(f"{e.upper()} {fmt(f['slope'], 2)} [{fmt(f['ci_lo'], 2)}, {fmt(f['ci_hi'], 2)}]"
                           for e, f in fits.items())
               + " (prediction -1/2; rule: reproduced if each CI meets [-0.6, -0.4]).")
    return out


def _arm_rows(r) -> list[str]:
    cfg, cur, tt = r["config"], r["curves"], r["conversations_to_90pct"]
    K = cfg["iterations"]
    rows = ["| arm | conversations logged | fraction of the gap closed (mean ± 95% CI) | conversations to 90% "
            "(median; censored) |", "|---|---:|---|---|"]
    for key in ("pi", "exact_npg", "direct_npg"):
        rows.append(f"| {ARM_NAMES[key]} | 0 (exact) | {_pm(cur[key]['mean'][-1], cur[key]['ci95'][-1])} | |")
    for e in ("mc", "td"):
        for N in cfg["batch_sizes"]:
            k = f"ippo_{e}_{N}"
            t = tt[k]
            med = "not reached" if t["median"] is None else f"{t['median']:.0f}"
            rows.append(f"| Iterative PPO {e.upper()}, N = {N} per iteration | {K * N} | "
                        f"{_pm(cur[k]['mean'][-1], cur[k]['ci95'][-1])} | {med}; {t['censored']} |")
            m, ci = r["final_ci"][f"offline_{e}_{N}"]
            rows.append(f"| offline {e.upper()}: one batch of {K * N} from pi_0 | {K * N} | {_pm(m, ci)} | |")
    t = tt["reinforce"]
    med = "not reached" if t["median"] is None else f"{t['median']:.0f}"
    rows.append(f"| {ARM_NAMES['reinforce']} ({cfg['reinforce_n']} per step) | {r['budget']} | "
                f"{_pm(cur['reinforce']['mean'][-1], cur['reinforce']['ci95'][-1])} | {med}; {t['censored']} |")
    return rows


def section(d) -> list[str]:
    r, b = d["ippo"], d["ippob"]
    lines = ["## Iterative PPO: multi-turn RL as a sequence of single-turn problems (tabular)", ""]
    if r is None:
        return lines + ["Not run.", ""]
    cfg = r["config"]
    lines += [f"`experiments/iterative_ppo.py --{r['profile']}` ({r['date']}, {r['seconds']['total']:.0f} s). "
              f"{cfg['instances']} sales funnels (`cpi.funnel_conversation`: {cfg['n_stages']} stages, "
              f"{cfg['vocab']}^{cfg['length']} responses of {cfg['length']} tokens, continuation probability "
              f"{cfg['gamma']}, customers entering at a uniform stage, 0/1 outcome when the conversation ends), "
              f"{cfg['iterations']} iterations from the uniform policy. The token-level PPO stand-in is "
              f"{cfg['inner_steps']} exact token-level NPG steps of size {cfg['eta']} on the single-turn MDP. "
              "One point per instance; 95% t-intervals.", ""]
    lines += _arm_rows(r) + [""]
    lines += ["Paired contrasts (final fraction of the gap closed; Holm over the four pre-registered contrasts; "
              "MDE = minimum detectable effect at 80% power):", "",
              "| contrast | mean ± 95% CI | Holm p | MDE |", "|---|---|---:|---:|"]
    for x in r["contrasts"] + r["exploratory"]:
        tag = " (exploratory)" if x in r["exploratory"] else ""
        lines.append(f"| {x['contrast']}{tag} | {x['mean']:+.3f} ± {x['ci95']:.3f} | {x['p_holm']:.2g} | "
                     f"{x['mde']:.3f} |")
    lines.append("")
    if b is not None:
        viol = sum(x["violations"] for x in b["rows"])
        lines += [f"Reduction identities and bounds on {b['config']['cases']} random conversation MDPs (random and "
                  f"funnel families, {b['seconds']:.0f} s): **{viol} violations**. Slack = bound side minus realised "
                  "side (identities: minus the absolute difference), scaled by max(1, ||V*||_inf).", "",
                  "| bound | kind | proved / cited | cases | violations | min scaled slack | median slack |",
                  "|---|---|---|---:|---:|---:|---:|"]
        for x in b["rows"]:
            lines.append(f"| {x['bound']}: {x['statement']} | {x['kind']} | {x['status']} | {x['cases']} | "
                         f"{x['violations']} | {x['min_scaled_slack']:.2e} | {x['median_slack']:.2e} |")
        lines.append("")
    return lines


def captions(d, figs) -> list[str]:
    cap = []
    if (figs / "iterative_ppo.png").exists():
        cap.append("* `iterative_ppo.png` (iterative_ppo.csv, iterative_ppo.json) - Iterative PPO on sales funnels: "
                   "(a) fraction of the gap V* - V^pi0 closed vs iteration for exact policy iteration, Iterative PPO "
                   "with exact Q and with Q fitted by Monte Carlo / TD from N conversations per iteration, and direct "
                   "token NPG; (b) the same vs logged conversations, with one-batch offline improvement and direct "
                   "token REINFORCE; (c) RMSE of the fitted Q vs N (log-log, slopes with 95% CIs).")
    if d["ippob"]:
        cap.append(f"* `iterative_ppo_bounds.json` - slack table of the reduction's identities and bounds "
                   f"({sum(r['violations'] for r in d['ippob']['rows'])} violations).")
    return cap
