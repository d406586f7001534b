"""Rollout speed on CPU (issue 5 benchmark): one run, same model and prompts.

(a) k = 4 continuations from a shared ~200-token prefix: prefill once + fan the KV cache out
    (``Policy.continue_from``) vs re-encoding the prefix for every continuation
    (``share_prefix=False``). Same generator seed, so both produce the same tokens (checked).
(b) our batched thought-chain sampler (``Policy.generate``, n samples per prompt) vs plain
    ``model.generate`` (``do_sample``, ``num_return_sequences=n``, ``stop_strings`` at the answer
    close) on the same prompts, temperature, top-p and token budget.

Reports tokens/s (sampled tokens / wall time), medians over interleaved repeats, and the ratios.
Targets: (a) >= 1.5x, (b) >= 1.0x. Writes paper_figs/bench_rollouts.json.

    python experiments/bench/rollouts.py [--model tiny] [--repeats 5] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from llm.models import load_policy
from llm.tasks import ArithTask


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def summary(rows):
    dts = [r[0] for r in rows]
    toks = [r[1] for r in rows]
    return {"median_s": statistics.median(dts), "tokens": statistics.median(toks),
            "tokens_per_s": statistics.median([t / d for d, t in zip(dts, toks)])}


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny", help="'tiny' (warm-started default) or a model directory")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--prefix_tokens", type=int, default=200)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max_new_tokens", type=int, default=48)
    ap.add_argument("--out", default="paper_figs/bench_rollouts.json")
    return ap.parse_args(argv)


def shared_prefix(pol, args) -> tuple[dict, int]:
    """(a) k continuations of a ~200-token prefix of complete thoughts: cache fanned out vs re-encoded."""
    fmt = pol.fmt
    long_task = ArithTask(fmt, min_terms=35, max_terms=35, digits=1, ops="+-")
    prob = long_task.sample(1, seed=0)[0]
    thoughts, prefix, n_prefix_thoughts = long_task.solution(prob)[:-1], [], 0
    for t in thoughts:
        if len(prefix) >= args.prefix_tokens:
            break
        prefix += pol.encode(t + fmt.delimiter)
        n_prefix_thoughts += 1
    prompt = long_task.prompt(prob)
    # max_thoughts counts the whole chain (prefix thoughts included): up to 6 new thoughts
    kw = dict(temperature=1.0, top_p=1.0, max_thoughts=n_prefix_thoughts + 6, max_thought_tokens=16)
    rows_a = {"shared": [], "reencode": []}
    same = True
    for rep in range(args.repeats):
        for mode in (["shared", "reencode"] if rep % 2 == 0 else ["reencode", "shared"]):
            g = torch.Generator().manual_seed(rep)
            dt, s = timed(lambda: pol.continue_from(prompt, prefix, args.k, share_prefix=(mode == "shared"),
                                                    generator=g, **kw))
            rows_a[mode].append((dt, sum(x.sampled_tokens for x in s), [x.response_ids for x in s]))
        same &= rows_a["shared"][-1][2] == rows_a["reencode"][-1][2]
    A = {m: summary(r) for m, r in rows_a.items()}
    A["speedup"] = A["reencode"]["median_s"] / A["shared"]["median_s"]
    A["identical_tokens"] = same
    A["prefix_tokens"], A["prompt_tokens"], A["k"] = len(prefix), len(pol.encode_prompt(prompt)), args.k
    return A, len(prefix)


def versus_generate(pol, args) -> dict:
    """(b) our batched chain sampler vs ``model.generate`` on the same prompts and budget."""
    fmt = pol.fmt
    task = pol.get_task("arith") if pol.meta.get("task") else ArithTask(fmt)
    probs = task.sample(args.prompts, seed=1, split="test")
    prompts = [task.prompt(p) for p in probs]
    tok = pol.tokenizer
    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True)

    def ours(seed):
        g = torch.Generator().manual_seed(seed)
        out = pol.generate(prompts, n=args.n, temperature=1.0, top_p=0.95, max_thoughts=args.max_new_tokens,
                           max_thought_tokens=args.max_new_tokens, max_new_tokens=args.max_new_tokens, generator=g)
        return out, sum(s.sampled_tokens for grp in out for s in grp), \
            sum(task.reward(p, s.text) for p, grp in zip(probs, out) for s in grp)

    # Stop generate at the answer close too: as an extra EOS id when it is one token (cheapest), else stop_strings.
    close_ids = pol.encode(fmt.answer_close)
    stop_kw = ({"eos_token_id": sorted(pol.eos_ids) + close_ids} if len(close_ids) == 1 else
               {"stop_strings": [fmt.answer_close], "tokenizer": tok})

    def hf(seed):
        torch.manual_seed(seed)
        with torch.inference_mode():
            out = pol.model.generate(**enc, do_sample=True, temperature=1.0, top_p=0.95, top_k=0,
                                     num_return_sequences=args.n, max_new_tokens=args.max_new_tokens,
                                     pad_token_id=pol.pad_id, **stop_kw)
        gen = out[:, enc["input_ids"].shape[1]:]
        n_tok = int((gen != pol.pad_id).sum())  # finished rows are padded
        texts = tok.batch_decode(gen, skip_special_tokens=True)
        acc = sum(task.reward(probs[i // args.n], t) for i, t in enumerate(texts))
        return out, n_tok, acc

    ours(0), hf(0)  # warm-up
    rows_b = {"ours": [], "model.generate": []}
    for rep in range(args.repeats):
        for name, fn in ([("ours", ours), ("model.generate", hf)] if rep % 2 == 0 else
                         [("model.generate", hf), ("ours", ours)]):
            dt, (_, toks, correct) = timed(lambda: fn(rep))
            rows_b[name].append((dt, toks, correct))
    B = {m: {**summary(r), "mean_reward": statistics.mean(c for _, _, c in r) / (args.prompts * args.n)}
         for m, r in rows_b.items()}
    B["tokens_per_s_ratio"] = B["ours"]["tokens_per_s"] / B["model.generate"]["tokens_per_s"]
    B["wall_ratio"] = B["model.generate"]["median_s"] / B["ours"]["median_s"]
    return B


def main(argv=None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    pol = load_policy(args.model)
    A, n_prefix = shared_prefix(pol, args)
    B = versus_generate(pol, args)
    result = {"config": vars(args), "device": "cpu", "torch_threads": torch.get_num_threads(),
              "params": sum(p.numel() for p in pol.model.parameters()), "a_shared_prefix": A, "b_vs_generate": B}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"model {args.model}: {result['params'] / 1e6:.2f}M params, {args.threads} threads, "
          f"medians of {args.repeats} interleaved repeats")
    print("| benchmark | method | median wall (s) | sampled tokens | tokens/s |")
    print("|---|---|---|---|---|")
    for m in ("shared", "reencode"):
        print(f"| (a) k={args.k} from {n_prefix}-token prefix | {m} | {A[m]['median_s']:.4f} | "
              f"{A[m]['tokens']:.0f} | {A[m]['tokens_per_s']:.0f} |")
    for m in ("ours", "model.generate"):
        print(f"| (b) {args.prompts} prompts x n={args.n}, <= {args.max_new_tokens} tokens | {m} | "
              f"{B[m]['median_s']:.3f} | {B[m]['tokens']:.0f} | {B[m]['tokens_per_s']:.0f} |")
    print(f"(a) prefix sharing speed-up: {A['speedup']:.2f}x (target >= 1.5x); identical tokens: "
          f"{A['identical_tokens']}")
    print(f"(b) ours vs model.generate: {B['wall_ratio']:.2f}x wall, {B['tokens_per_s_ratio']:.2f}x tokens/s "
          f"(target >= 1.0x); mean reward ours {B['ours']['mean_reward']:.3f}, "
          f"generate {B['model.generate']['mean_reward']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
