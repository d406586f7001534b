"""Screening evaluation of tiny-default candidates (``experiments/tiny_recipes.md``): the own-chain part
of ``llm.tiny.evaluate_tiny`` without the per-length table (about a minute per model on one thread),
same seeds for every model, so all models are asked about the same test problems.

    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 19 python experiments/tiny_screen.py \\
        v6=llm/assets/tiny E1=/tmp/tiny16e/E1 --own_prompts 300 --out /tmp/tiny16e/screen300

Each model gets ``evaluate_tiny(pol, n=300, own_prompts=..., own_samples=4, lengths=())`` (its JSON is
written to ``--out/<name>.json``), then one markdown row per model is printed: greedy accuracy, own
sampled success, own failures, own-failure exact localization with its Wilson 95% interval against
chance and the ratio, ``k <= e`` against a uniform guess, localization reply tokens (mean / max), and
the verifier's parseable share and accuracy against the majority class with both recalls.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

HEADER = ("| model | greedy acc | own success | failures | own loc exact [Wilson 95%] (chance) | x chance "
          "| k<=e (uniform) | reply tokens mean/max | verifier parse | verifier acc [Wilson 95%] (majority) "
          "| recall correct / wrong |\n|---|---|---|---|---|---|---|---|---|---|---|")


def row(name: str, res: dict) -> str:
    """One markdown row of the screening table from an ``evaluate_tiny`` result."""
    own = res["own"]
    loc, ver = own["localization"], own["verification"]
    ci = lambda r: f"{r['rate']:.3f} [{r['wilson95'][0]:.3f}, {r['wilson95'][1]:.3f}]"  # noqa: E731
    return (f"| {name} | {res['accuracy']['rate']:.3f} | {own['success']['rate']:.3f} | {own['failures']} "
            f"| {ci(loc['exact'])} ({loc['chance']:.3f}) | {loc['exact_over_chance']:.2f} "
            f"| {loc['at_or_before']['rate']:.3f} ({loc['uniform_at_or_before']:.3f}) "
            f"| {loc['reply_tokens_mean']:.1f} / {loc['reply_tokens_max']} | {ver['parseable']['rate']:.3f} "
            f"| {ci(ver['accuracy'])} ({ver['majority_baseline']:.3f}) "
            f"| {ver['recall_correct']['rate']:.3f} / {ver['recall_wrong']['rate']:.3f} |")


def main(argv=None) -> list[str]:
    from llm.policy import Policy
    from llm.tiny import evaluate_tiny

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", help="NAME=MODEL_DIR")
    ap.add_argument("--n", type=int, default=300, help="greedy / injected-error test problems")
    ap.add_argument("--own_prompts", type=int, default=300)
    ap.add_argument("--out", required=True, help="folder for one JSON per model")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for spec in a.models:
        name, _, path = spec.partition("=")
        if not path:
            raise ValueError(f"models: expected NAME=MODEL_DIR, got {spec!r}")
        t0 = time.time()
        res = evaluate_tiny(Policy.from_pretrained(path), n=a.n, own_prompts=a.own_prompts, own_samples=4, lengths=())
        res.update(eval_seconds=time.time() - t0, model=path)
        (out / f"{name}.json").write_text(json.dumps(res, indent=1) + "\n")
        rows.append(row(name, res))
    print(HEADER, *rows, sep="\n")
    return rows


if __name__ == "__main__":
    main()
