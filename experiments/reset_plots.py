"""Figure of experiments/reset_complexity.py: the three measurements against p_pi (log-log)."""
from __future__ import annotations

import numpy as np

COLORS = {"random": "tab:red", "noisy": "tab:purple", "oracle": "tab:green", "start": "tab:gray"}
LABEL = {"random": "RR", "noisy": "noisy(q=0.5)", "oracle": "CARO", "start": "start"}
STOP_MARK = {"target": "o", "budget": "^", "no improvable state": "x", "censored at n_cap": "^"}
PANELS = [  # (family, quantity, metric, y label, title)
    ("gated_trap", "per_iteration_samples", "n", "reset states per batch n* (one CPI step)",
     "(a) per-iteration samples: P(gain >= 1/2 exact) >= 0.9"),
    ("gated_trap", "first_gain", "n", "exact first-iteration gain V(D)",
     "(b) exact first-iteration gain (K&L filled, SPI open)"),
    ("gated_trap", "samples_to_target", "rollouts", "rollout trajectories to half the suboptimality",
     "(c) end to end, theorem-sized batches (K&L filled, SPI open)"),
]
STRESS_PANELS = [
    ("tree", "samples_to_target", "rollouts", "rollouts to half the suboptimality",
     "stress: thought trees, fixed batch 30 (K&L)"),
    ("lock", "samples_to_target", "rollouts", "rollouts to half the suboptimality",
     "stress: combination locks, fixed batch 30 (K&L)"),
    ("tree", "per_iteration_samples", "n", "n* (one CPI step)", "stress: trees, per-iteration samples"),
]


def _fit(fits, family, quantity, metric, reset, step):
    return next((f for f in fits if f["family"] == family and f["quantity"] == quantity
                 and f["metric"] == metric and f["reset"] == reset and f["step"] == step
                 and "slope" in f), None)


def _panel(ax, rows, fits, family, quantity, metric):
    for reset in ("random", "noisy", "oracle"):
        for step, filled in (("kakade_langford", True), ("spi", False)):
            sel = [r for r in rows if r.get("family", "gated_trap") == family and r["quantity"] == quantity
                   and r.get("metric", "n") == metric and r["reset"] == reset and r["step"] == step]
            if not sel:
                continue
            c = COLORS[reset]
            for stop in sorted({r["stop"].split("/")[-1] if r["censored"] else "target" for r in sel}):
                pts = [r for r in sel if (r["stop"].split("/")[-1] if r["censored"] else "target") == stop]
                mark = STOP_MARK.get(stop, "o")
                style = ({"color": c} if mark == "x" else
                         {"facecolors": c if filled else "none", "edgecolors": c})
                ax.scatter([r["p"] for r in pts], [r["value"] for r in pts], s=22, marker=mark,
                           alpha=0.85, **style)
            f = _fit(fits, family, quantity, metric, reset, step)
            if f is None or not np.isfinite(f["slope"]):
                continue
            p = np.array([r["p"] for r in sel])
            y = np.array([r["value"] for r in sel])
            xs = np.geomspace(p.min(), p.max(), 20)
            ok = ~np.array([r["censored"] for r in sel])
            c0 = np.mean(np.log(y[ok])) - f["slope"] * np.mean(np.log(p[ok])) if ok.any() else 0
            label = (f"{LABEL[reset]}{'' if filled else ' SPI'}: {f['slope']:.2f} "
                     f"[{f['ci_lo']:.2f}, {f['ci_hi']:.2f}], pred {f['predicted_slope']:.2f}")
            ax.plot(xs, np.exp(c0) * xs ** f["slope"], color=c, lw=1.2 if filled else 0.8,
                    ls="-" if filled else ":", label=label)
            pred = np.array([r["predicted"] for r in sel], dtype=np.float64)
            if filled and np.all(pred > 0) and quantity != "first_gain":
                order = np.argsort(p)
                ax.plot(p[order], pred[order], color=c, ls="--", lw=0.8, alpha=0.7)


def plot(rows, fits, path, stress: bool):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (NullLocator below)
    panels = PANELS + (STRESS_PANELS if stress else [])
    nrow = len(panels) // 3
    fig, axes = plt.subplots(nrow, 3, figsize=(17, 5.6 * nrow), squeeze=False)
    for ax, (family, quantity, metric, ylab, title) in zip(axes.ravel(), panels):
        _panel(ax, rows, fits, family, quantity, metric)
        ax.set_xscale("log")
        ax.set_yscale("log")
        xs = sorted({r["p"] for r in rows if r.get("family") == family and r["quantity"] == quantity})
        if xs:
            ax.set_xticks(xs[::2], [f"{x:.3g}" for x in xs[::2]])
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel(r"$p_\pi$ (on-policy probability of reaching the improvable state)")
        ax.set_ylabel(ylab)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, which="both")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best", title="slope [95% CI], design prediction",
                      title_fontsize=7)
    fig.suptitle("Gated trap (p is the only thing that moves): dashed = design prediction; "
                 "o reached, ^ censored (budget / n cap), x stopped: no improvable state", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
