"""One RL training step, timed: our GRPO vs TRL's GRPOTrainer (same work), and our SRPO vs our GRPO
(with RRPO beside it: the same reset rollouts without the localization call, so SRPO - RRPO is what the
model's localization costs and RRPO / GRPO the floor of any reset method at this shape).

Workload (the same for every contender): the tiny default model (``llm.tiny``), the built-in arith task
with the tiny model's settings, ``--prompts`` prompts x ``--group`` completions, at most ``--max_new``
new tokens, temperature 1.0, top_p 1.0 (top_k 0), lr 5e-5 AdamW, beta 0 (no KL, no reference model),
one optimisation pass, one forward/backward over the whole batch, CPU. TRL: ``GRPOTrainer`` with
``use_cpu``, no vLLM, ``loss_type="grpo"`` (= our default ``seq-mean-token-mean``), ``num_iterations=1``;
its generation stops at EOS or the answer's closing marker (ours stops at the answer);
its step is timed by a callback from ``on_step_begin`` to ``on_step_end`` (generation, scoring, loss,
backward, optimizer). Ours: ``build_rollouts`` + ``Trainer.update``.

Runs are interleaved in rounds (TRL, then our GRPO, SRPO and RRPO), each round from freshly loaded tiny weights;
the first step of each contender in a round is a warm-up and is not counted. Medians over the rest. Within a
round our three contenders alternate step by step (GRPO step s, SRPO step s, RRPO step s, then s + 1) on the
same problems, so each SRPO (RRPO) step has a GRPO step of the same work next to it in time: the script also
reports the median of these paired ratios with a bootstrap 95% interval (the machine's drift over a round
cancels in a pair; a single ratio of medians does not show how far it can move from run to run).

    python experiments/bench/train_step.py                  # 32 x 8, 40 tokens, 3 rounds x 3 steps
    python experiments/bench/train_step.py --rounds 1 --steps 2 --prompts 8   # quick look

Writes ``experiments/bench/results/train_step.json`` (config + every step's numbers) and prints a table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from llm.config import parse_args
from llm.rollouts import build_rollouts
from llm.seeds import mix_seed
from llm.train import Trainer, step_problems


def our_cfg(method: str, a, out: str):
    return parse_args(["--method", method, "--model", a.model, "--task", "arith", "--prompts_per_step",
                       str(a.prompts), "--rollouts_per_prompt", str(a.group), "--max_new_tokens", str(a.max_new),
                       "--max_thought_tokens", str(a.max_new), "--temperature", "1.0", "--top_p", "1.0",
                       "--lr", "5e-5", "--micro_batch_size", str(a.prompts * a.group), "--eval_every", "0",
                       "--progress", "false", "--out_dir", out, "--steps", str(a.steps), "--seed", str(a.seed)])


def run_ours(methods: list[str], a, round_: int) -> dict[str, list[dict]]:
    """One round of our contenders, each from freshly loaded weights, alternating step by step."""
    with tempfile.TemporaryDirectory() as d:
        trainers = {m: Trainer(our_cfg(m, a, str(Path(d) / m))) for m in methods}
        rows: dict[str, list[dict]] = {m: [] for m in methods}
        for s in range(1, a.steps + 1):
            for m, tr in trainers.items():
                probs, pos = step_problems(tr.train_set, s + 100 * round_, a.prompts, a.seed)
                t0 = time.perf_counter()
                rb = build_rollouts(tr.policy, tr.task, probs, tr.cfg.rollout, seed=mix_seed(a.seed, s, round_),
                                    prompt_ids=pos)
                t1 = time.perf_counter()
                tr.update(rb)
                t2 = time.perf_counter()
                rows[m].append(dict(step=s, seconds=t2 - t0, gen_s=t1 - t0, update_s=t2 - t1,
                                    tokens_generated=int(rb.stats["tokens_generated"]),
                                    tokens_trained=int(sum(len(x.response_ids) - x.prefix_len for x in rb.samples)),
                                    reward=float(rb.rewards.mean())))
        return rows


def paired_ratios(raw: dict[str, list[dict]], num: str, den: str = "ours_grpo", seed: int = 0) -> dict:
    """``num``'s timed steps over ``den``'s of the same round and step: every ratio, their median and a
    percentile-bootstrap 95% interval of the median (10,000 resamples of the pairs)."""
    import numpy as np

    base = {(r["round"], r["step"]): r["seconds"] for r in raw[den] if r["step"] > 1}
    ratios = [r["seconds"] / base[(r["round"], r["step"])] for r in raw[num]
              if r["step"] > 1 and (r["round"], r["step"]) in base]
    x = np.asarray(ratios)
    boot = np.median(x[np.random.default_rng(seed).integers(0, len(x), (10_000, len(x)))], axis=1)
    return {"ratios": ratios, "median": float(np.median(x)), "ci95": [float(np.quantile(boot, 0.025)),
                                                                        float(np.quantile(boot, 0.975))]}


def run_trl(a, round_: int) -> list[dict]:
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from llm.models import load_policy, resolve_model

    path = resolve_model(a.model)
    pol = load_policy(path)
    task = pol.get_task("arith")
    probs = task.sample(a.prompts * (a.steps + 1), seed=mix_seed(a.seed, 99, round_), split="train")
    from _trl_task import trl_dataset_and_reward  # a sibling module (this script's folder is on sys.path)

    ds, reward, tokens = trl_dataset_and_reward(task, probs)

    times: list[tuple[float, float]] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            times.append((self.t, time.perf_counter()))

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    # same stopping rule as ours: a chain ends at its answer (the tiny model does not emit EOS after it, so
    # without this TRL would always decode all max_new tokens). TRL reads eos ids from generation_config.
    close = tok.convert_tokens_to_ids(pol.fmt.answer_close)
    if isinstance(close, int) and close != tok.unk_token_id and not a.trl_no_answer_stop:
        model.generation_config.eos_token_id = [tok.eos_token_id, close]
    with tempfile.TemporaryDirectory() as d:
        cfg = GRPOConfig(output_dir=d, per_device_train_batch_size=a.prompts * a.group, num_generations=a.group,
                         max_completion_length=a.max_new, beta=0.0, num_iterations=1, use_cpu=True,
                         learning_rate=5e-5, weight_decay=0.01, max_grad_norm=1.0, temperature=1.0, top_p=1.0,
                         top_k=0, loss_type="grpo", gradient_accumulation_steps=1, max_steps=a.steps,
                         logging_steps=1, report_to=[], save_strategy="no", seed=a.seed, shuffle_dataset=False,
                         disable_tqdm=True, bf16=False, dataloader_num_workers=0)
        tr = GRPOTrainer(model=model, reward_funcs=reward, args=cfg, train_dataset=ds, processing_class=tok,
                         callbacks=[Clock()])
        tr.train()
    return [dict(step=i + 1, seconds=t1 - t0, tokens_generated=tokens[i] if i < len(tokens) else None)
            for i, (t0, t1) in enumerate(times)]


def summarise(rows: list[dict]) -> dict:
    warm = [r for r in rows if r["step"] > 1] or rows
    sec = statistics.median(r["seconds"] for r in warm)
    tok = statistics.median(r["tokens_generated"] for r in warm if r.get("tokens_generated") is not None)
    return {"sec_per_step": sec, "tokens_generated_per_step": tok, "tokens_per_s": tok / sec, "n": len(warm)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny", help="model dir (default: the tiny default)")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--max_new", type=int, default=40)
    ap.add_argument("--steps", type=int, default=3, help="steps per contender per round (first is warm-up)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip_trl", action="store_true")
    ap.add_argument("--trl_no_answer_stop", action="store_true",
                    help="let TRL decode until EOS / max_new (more work than ours: reported for reference)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_step.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    raw: dict[str, list[dict]] = {"trl_grpo": [], "ours_grpo": [], "ours_srpo": [], "ours_rrpo": []}
    for r in range(a.rounds):
        if not a.skip_trl:
            raw["trl_grpo"] += [{**x, "round": r} for x in run_trl(a, r)]
        for m, rows in run_ours(["grpo", "srpo", "rrpo"], a, r).items():
            raw[f"ours_{m}"] += [{**x, "round": r} for x in rows]
        print(f"round {r}: " + ", ".join(f"{k} {statistics.median(x['seconds'] for x in v if x['round'] == r):.3f} s"
                                        for k, v in raw.items() if v), flush=True)
    summ = {k: summarise(v) for k, v in raw.items() if v}
    ratios = {"ours_grpo / trl_grpo": summ["ours_grpo"]["sec_per_step"] / summ["trl_grpo"]["sec_per_step"]
              if "trl_grpo" in summ else None,
              "ours_srpo / ours_grpo": summ["ours_srpo"]["sec_per_step"] / summ["ours_grpo"]["sec_per_step"],
              "ours_rrpo / ours_grpo": summ["ours_rrpo"]["sec_per_step"] / summ["ours_grpo"]["sec_per_step"]}
    print(f"\n{a.prompts} prompts x {a.group} completions, <= {a.max_new} new tokens, {a.threads} threads, "
          f"medians over {a.rounds} rounds x {a.steps - 1} timed steps\n")
    print("| contender | s / step | generated tokens / step | tokens / s |")
    print("|---|---|---|---|")
    for k, v in summ.items():
        print(f"| {k} | {v['sec_per_step']:.3f} | {v['tokens_generated_per_step']:.0f} | {v['tokens_per_s']:.0f} |")
    for k, v in ratios.items():
        if v is not None:
            print(f"{k}: {v:.2f}")
    paired = {f"{m} / ours_grpo": paired_ratios(raw, m) for m in ("ours_srpo", "ours_rrpo")} \
        if a.steps > 1 else {}
    for k, v in paired.items():
        print(f"{k}, paired by round and step: median {v['median']:.2f}, 95% CI [{v['ci95'][0]:.2f}, "
              f"{v['ci95'][1]:.2f}] over {len(v['ratios'])} pairs")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"config": vars(a), "summary": summ, "ratios": ratios, "paired": paired, "raw": raw,
                               "torch": torch.__version__}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
