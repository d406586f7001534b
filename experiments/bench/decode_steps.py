"""What one decode step costs outside the model's matmuls, at the realistic shape (issue 18, phase 1:
measure, propose; the decode loop itself is not changed here).

(1) Next-token sampling with temperature and top-p over a 32k vocabulary, B rows:
    * ``current``: ``Policy._sample_next`` as it is (softmax, full sort, cumsum, mask, scatter back to
      vocabulary order, ``multinomial``);
    * ``sorted``: the same nucleus, sampled in sorted order and mapped back with one ``gather`` (no
      ``zeros_like`` + ``scatter``);
    * ``topk``: ``topk(k)`` first; rows whose top-k mass reaches ``top_p`` hold their whole nucleus
      there (it is the shortest sorted prefix reaching ``top_p``), the others fall back to the sort;
    * ``threshold``: no sort: bisection (40 steps) for the probability below which tokens are dropped;
    * ``no_top_p``: softmax + ``multinomial`` only (what top-p 1.0 costs).
    Two logit shapes: ``flat`` (a random model: the nucleus is most of the vocabulary) and ``peaked``
    (Zipf-like: ``p ~ rank^-1.5`` after the temperature, a nucleus of about 200 tokens, as trained LMs). Every variant
    keeps exactly the same nucleus and probabilities (checked before timing).
(2) Appending one token to a KV cache of length L and attending to it (B rows, H heads, one layer):
    * ``cat``: ``DynamicLayer.update`` (``torch.cat`` of the whole cache) + SDPA;
    * ``prealloc``: write into a preallocated buffer, attend to the ``[:L+1]`` view.

    python experiments/bench/decode_steps.py            # B 8 and 64, V 32000, L 256 and 512
    python experiments/bench/decode_steps.py --quick    # seconds (the test suite)

Writes ``experiments/bench/results/decode_steps.json``; medians of interleaved repeats, milliseconds.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def nucleus_sorted(probs, top_p):
    """(kept probabilities in descending order, their vocabulary ids): the smallest head reaching top_p."""
    sp, si = probs.sort(dim=-1, descending=True)
    return sp.masked_fill(sp.cumsum(-1) - sp > top_p, 0.0), si


def s_current(logits, T, top_p, g):
    probs = torch.softmax(logits.float() / T, dim=-1)
    sp, si = nucleus_sorted(probs, top_p)
    probs = torch.zeros_like(probs).scatter_(-1, si, sp)
    return torch.multinomial(probs, 1, generator=g).squeeze(-1)


def s_sorted(logits, T, top_p, g):
    sp, si = nucleus_sorted(torch.softmax(logits.float() / T, dim=-1), top_p)
    return si.gather(-1, torch.multinomial(sp, 1, generator=g)).squeeze(-1)


def topk_nucleus(probs, top_p, k):
    """Same nucleus as ``nucleus_sorted`` (rows whose top-k mass < top_p use the full sort):
    (kept probs (B, k'), ids (B, k')), k' = k unless a row fell back."""
    tp, ti = probs.topk(min(k, probs.shape[-1]), dim=-1)
    ok = tp.sum(-1) >= top_p
    if bool(ok.all()):
        return tp.masked_fill(tp.cumsum(-1) - tp > top_p, 0.0), ti
    sp, si = nucleus_sorted(probs, top_p)
    sp[ok, :tp.shape[1]] = tp[ok].masked_fill(tp[ok].cumsum(-1) - tp[ok] > top_p, 0.0)
    sp[ok, tp.shape[1]:] = 0.0
    si[ok, :tp.shape[1]] = ti[ok]
    return sp, si


def s_topk(logits, T, top_p, g, k=256):
    kp, ki = topk_nucleus(torch.softmax(logits.float() / T, dim=-1), top_p, k)
    return ki.gather(-1, torch.multinomial(kp, 1, generator=g)).squeeze(-1)


def threshold_nucleus(probs, top_p, iters: int = 40):
    """The sorted nucleus without a sort: bisection for the probability ``lo`` just below the last kept
    token (``mass(p > t) > top_p`` for ``t <= lo``), keep ``p > lo``. Same set as the sort up to exact
    ties at the boundary (the sort keeps one of the tied, this keeps all)."""
    lo = torch.zeros(probs.shape[0], 1, dtype=probs.dtype)
    hi = probs.max(-1, keepdim=True).values
    for _ in range(iters):
        mid = (lo + hi) / 2
        above = (probs * (probs > mid)).sum(-1, keepdim=True) > top_p       # mid is below the boundary
        lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
    return probs.masked_fill(probs <= lo, 0.0)


def s_threshold(logits, T, top_p, g):
    return torch.multinomial(threshold_nucleus(torch.softmax(logits.float() / T, dim=-1), top_p), 1,
                             generator=g).squeeze(-1)


def s_no_top_p(logits, T, top_p, g):
    return torch.multinomial(torch.softmax(logits.float() / T, dim=-1), 1, generator=g).squeeze(-1)


SAMPLERS = {"current": s_current, "sorted": s_sorted, "topk": s_topk, "threshold": s_threshold,
            "no_top_p": s_no_top_p}


def make_logits(kind: str, B: int, V: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "flat":
        return torch.randn(B, V, generator=g) * 0.5                  # a random model's logits
    ranks = torch.stack([torch.randperm(V, generator=g) for _ in range(B)]) + 1
    return -1.05 * torch.log(ranks.float())    # p ~ rank^-1.5 at temperature 0.7 (Zipf): ~200-token nucleus


def check_same_nucleus(logits, T, top_p, k=256) -> float:
    """Max |difference| between the kept distributions of the sort and the top-k / threshold variants (in
    vocabulary order)."""
    probs = torch.softmax(logits.float() / T, dim=-1)
    a = torch.zeros_like(probs).scatter_(-1, *reversed(nucleus_sorted(probs, top_p)))
    kp, ki = topk_nucleus(probs, top_p, k)
    b = torch.zeros_like(probs).scatter_(-1, ki, kp)
    c = threshold_nucleus(probs, top_p)
    return max(float((a - b).abs().max()), float((a - c).abs().max()))


def _median_ms(fns: dict, reps: int) -> dict:
    times = {k: [] for k in fns}
    for f in fns.values():
        f()
    for _ in range(reps):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(1e3 * (time.perf_counter() - t0))
    return {k: statistics.median(v) for k, v in times.items()}


def bench_sampling(B, V, kind, reps, T=0.7, top_p=0.95) -> dict:
    logits = make_logits(kind, B, V, seed=B)
    probs = torch.softmax(logits / T, -1)
    nucleus = int((nucleus_sorted(probs, top_p)[0] > 0).sum(-1).float().mean())
    g = torch.Generator().manual_seed(0)
    ms = _median_ms({k: (lambda f=f: f(logits, T, top_p, g)) for k, f in SAMPLERS.items()}, reps)
    return {"B": B, "V": V, "logits": kind, "mean_nucleus_tokens": nucleus,
            "same_nucleus_max_abs_diff": check_same_nucleus(logits, T, top_p), "ms": ms}


def bench_kv(B, H, L, d, reps) -> dict:
    """One layer's KV append + SDPA for one new token, 8 consecutive steps from length L."""
    g = torch.Generator().manual_seed(0)
    k0, v0 = (torch.randn(B, H, L, d, generator=g) for _ in range(2))
    new = [(torch.randn(B, H, 1, d, generator=g), torch.randn(B, H, 1, d, generator=g),
            torch.randn(B, H, 1, d, generator=g)) for _ in range(8)]
    buf_k, buf_v = torch.empty(B, H, L + 64, d), torch.empty(B, H, L + 64, d)

    def cat():
        k, v = k0, v0
        for q, kn, vn in new:
            k, v = torch.cat([k, kn], -2), torch.cat([v, vn], -2)
            F.scaled_dot_product_attention(q, k, v)

    def prealloc():
        buf_k[:, :, :L], buf_v[:, :, :L] = k0, v0      # (the copy a real cache does once, not per step)
        n = L
        for q, kn, vn in new:
            buf_k[:, :, n:n + 1], buf_v[:, :, n:n + 1] = kn, vn
            n += 1
            F.scaled_dot_product_attention(q, buf_k[:, :, :n], buf_v[:, :, :n])

    def refill():
        buf_k[:, :, :L], buf_v[:, :, :L] = k0, v0
    ms = _median_ms({"cat": cat, "prealloc": prealloc, "refill_only": refill}, reps)
    ms["prealloc"] -= ms.pop("refill_only")
    return {"B": B, "H": H, "L": L, "d": d, "ms_per_step": {k: v / 8 for k, v in ms.items()}}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "decode_steps.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    Bs, V, Ls, reps = ((8,), 2000, (64,), 3) if a.quick else ((8, 64), 32000, (256, 512), a.reps)
    res = {"config": vars(a), "torch": torch.__version__,
           "sampling": [bench_sampling(B, V, kind, reps) for B in Bs for kind in ("flat", "peaked")],
           "kv_append": [bench_kv(B, 6, L, 64, reps) for B in Bs for L in Ls]}
    print("| B | logits | nucleus | " + " | ".join(f"{k} ms" for k in SAMPLERS) + " |")
    print("|---" * (3 + len(SAMPLERS)) + "|")
    for r in res["sampling"]:
        print(f"| {r['B']} | {r['logits']} | {r['mean_nucleus_tokens']} | "
              + " | ".join(f"{r['ms'][k]:.2f}" for k in SAMPLERS) + " |")
    print("\n| B | cache length | cat ms/step | prealloc ms/step |\n|---|---|---|---|")
    for r in res["kv_append"]:
        print(f"| {r['B']} | {r['L']} | {r['ms_per_step']['cat']:.3f} | {r['ms_per_step']['prealloc']:.3f} |")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(f"wrote {out}", file=sys.stderr)
    return res


if __name__ == "__main__":
    main()
