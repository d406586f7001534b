"""Training-step speed at realistic shapes (issue 18), on CPU or one GPU: generation, localization,
continuations and update of our GRPO and SRPO steps beside ``model.generate``, TRL's ``GRPOTrainer``, the
naive (unshared) update and gradient checkpointing.

Workload (``_realistic_setup``, size ``cpu``): a random-initialised Llama (hidden 384, 8 layers, 26.5M
parameters) with a 32k byte-level BPE vocabulary trained locally, prompts of exactly 256 tokens,
``--prompts`` prompts x 8 samples of 4 scripted thoughts x 64 tokens (256-token responses, the last
thought ends with a sampled boxed digit); SRPO localizes the last thought, so each reset group shares
prompt + 3 thoughts (448 tokens) and its 4 continuations re-write the last 64. Sampling at temperature
0.7, top-p 0.95 (the paper's settings); the update is the package's (``llm.update.update`` with
``update_forward`` naive / shared / packed): REINFORCE with ``seq-mean-token-mean``, passes of at most
``--max_tokens`` tokens (shared prefix: ``plan_passes``, which keeps a reset group's 64-token
continuations out of a pass with 256-token chains), one AdamW step (``_realistic_measure.update``).

One run, interleaved rounds; round 0 warms up and is not counted. Each round: TRL's step (``--trl``:
one ``GRPOTrainer`` whose callbacks time each step and then run our round), our GRPO step (generation,
then the update on the same rollouts: naive, shared prefix, packed, naive and shared with gradient
checkpointing), our SRPO step (generation, localization, continuations; update naive and shared on the
whole batch, and naive / shared / packed on its reset groups alone), ``model.generate`` on the GRPO
generation work (dynamic and static cache). Then one profile of the decode loop (ours and generate).
Medians over rounds; ratios are medians of the per-round ratios (paired). ``model.generate`` runs right
after our GRPO generation, on the same prompts. Peak memory: resident set
size (CPU, sampled every 2 ms after ``malloc_trim``) or ``torch.cuda.max_memory_allocated``.

Targets (issue 18), decided before the run (``verdicts``): our GRPO step <= 0.67x TRL's; shared-prefix
update >= 1.5x faster than the naive one on reset groups and no slower on fresh groups (GRPO batch);
our sampler >= 1.5x ``model.generate`` tokens/s.

    python experiments/bench/realistic.py                       # CPU, size cpu, TRL included
    python experiments/bench/realistic.py --quick               # seconds (the test suite runs it)
    python experiments/bench/realistic.py --device cuda --size gpu --rounds 3

Writes ``experiments/bench/results/realistic.json`` (config, machine load, every round, medians,
ratios, verdicts, decode profile) and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _realistic_measure as M  # noqa: E402
from _realistic_setup import SIZES, describe, make_workload  # noqa: E402
from _trl_task import trl_dataset_and_reward  # noqa: E402

from llm.config import RolloutConfig  # noqa: E402
from llm.rollouts import build_rollouts  # noqa: E402
from llm.seeds import mix_seed as _mix  # noqa: E402

TARGETS = {"ours_grpo_over_trl": 0.67, "reset_update_speedup": 1.5, "fresh_update_speedup": 1.0,
           "sampler_over_generate": 1.5}


def rollout_cfg(method: str, size, a) -> RolloutConfig:
    return RolloutConfig(method=method, rollouts_per_prompt=8, n_fresh=4, n_resets=1, max_tries=12,
                         temperature=0.7, top_p=0.95, max_thoughts=size.thoughts + 1,
                         max_thought_tokens=2 * size.thought_tokens, max_new_tokens=size.response_tokens + 16,
                         loc_temperature=0.3, loc_max_new_tokens=size.loc_reply_tokens + 16)


def timed_update(pol, opt, samples, adv, mode, a, ckpt=False) -> dict:
    with M.grad_checkpointing(pol.model, ckpt):
        dt, info, pk = M.measured(lambda: M.update(pol, opt, samples, adv, mode=mode, max_tokens=a.max_tokens),
                                  a.device)
    return {"seconds": dt, "peak_bytes": pk.peak, "delta_bytes": pk.delta, **info}


def ours_step(pol, task, probs, method, size, a, r, opt, between=None) -> dict:
    """Rollouts by phase (``TimedPolicy``), then ``between()`` (if given), then the updates on them."""
    tp = M.TimedPolicy(pol)
    t0 = time.perf_counter()
    rb = build_rollouts(tp, task, probs, rollout_cfg(method, size, a), seed=_mix(a.seed, 17, r),
                        prompt_ids=list(range(len(probs))))
    rec = {"rollout_s": time.perf_counter() - t0, "phases": tp.phases, "samples": len(rb),
           "trained_tokens": sum(len(s.response_ids) - s.prefix_len for s in rb.samples),
           "reward": float(rb.rewards.mean()), "reset_steps": rb.stats.get("reset_steps", [])}
    if between is not None:
        rec["between"] = between()
    modes = [("naive", False), ("shared", False)]
    if method == "grpo":
        modes += [("packed", False), ("naive", True), ("shared", True)]
    modes = modes[r % len(modes):] + modes[:r % len(modes)]          # rotate the order across rounds
    rec["update"] = {f"{m}{'+ckpt' if c else ''}": timed_update(pol, opt, rb.samples, rb.advantages, m, a, c)
                     for m, c in modes}
    if method != "grpo":
        idx = [i for i, m in enumerate(rb.meta) if m["kind"] == "reset"]
        sub = [rb.samples[i] for i in idx]
        rec["update_reset_groups"] = {m: timed_update(pol, opt, sub, rb.advantages[idx], m, a)
                                      for m in ("naive", "shared", "packed")}
    return rec


def generate_round(pol, task, probs, size, a, r) -> dict:
    prompts = [task.prompt(p) for p in probs]
    close = pol.encode(pol.fmt.answer_close)
    kw = dict(max_new=size.response_tokens + 16, temperature=0.7, top_p=0.95,
              stop_ids=sorted(pol.eos_ids) + close[-1:], seed=_mix(a.seed, 23, r))
    out = {"dynamic": M.hf_generate(pol, prompts, 8, **kw)}
    if not a.no_static:
        try:
            out["static"] = M.hf_generate(pol, prompts, 8, static=True, **kw)
        except Exception as e:  # noqa: BLE001  (recorded: a variant that does not run here)
            out["static"] = {"error": f"{type(e).__name__}: {e}"[:300]}
    return out


def run_trl(pol, task, probs, size, a, after_step) -> None:
    """TRL's GRPOTrainer on the same prompts and model weights; ``after_step(r, trl_record)`` after step r."""
    import tempfile

    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from _realistic_setup import make_model

    model = make_model(pol.tokenizer, size, a.seed, next(pol.model.parameters()).dtype)
    model.load_state_dict(pol.model.state_dict())
    model.script = pol.model.script
    model.generation_config.eos_token_id = sorted(pol.eos_ids) + pol.encode(pol.fmt.answer_close)[-1:]
    ds, reward, tokens = trl_dataset_and_reward(task, probs)

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.pk = M.Peak(a.device).__enter__()
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            M.sync(a.device)
            dt = time.perf_counter() - self.t
            self.pk.__exit__(None, None, None)
            r = state.global_step - 1
            after_step(r, {"seconds": dt, "peak_bytes": self.pk.peak, "tokens": tokens[r] if r < len(tokens) else None})

    with tempfile.TemporaryDirectory() as d:
        cfg = GRPOConfig(output_dir=d, per_device_train_batch_size=8 * a.prompts, num_generations=8,
                         max_completion_length=size.response_tokens + 16, beta=0.0, num_iterations=1,
                         use_cpu=a.device == "cpu", learning_rate=1e-6, weight_decay=0.0, max_grad_norm=1.0,
                         temperature=0.7, top_p=0.95, top_k=0, loss_type="grpo", gradient_accumulation_steps=1,
                         max_steps=a.rounds + 1, logging_steps=1, report_to=[], save_strategy="no", seed=a.seed,
                         shuffle_dataset=False, disable_tqdm=True, bf16=a.dtype == "bfloat16",
                         dataloader_num_workers=0)
        GRPOTrainer(model=model, reward_funcs=reward, args=cfg, train_dataset=ds, processing_class=pol.tokenizer,
                    callbacks=[Clock()]).train()


# ----------------------------------------------------------------------------- one run
def flat(rec: dict) -> dict:
    """Scalar metrics of one round (seconds, tokens, bytes) and its paired ratios."""
    out = {}
    for m in ("grpo", "srpo"):
        ph = rec[m]["phases"]
        for name, v in ph.items():
            if v["calls"]:
                out[f"{m}_{name}_s"], out[f"{m}_{name}_tokens"] = v["seconds"], v["tokens"]
                out[f"{m}_{name}_peak"] = v["peak_bytes"]
        for mode, u in rec[m]["update"].items():
            out[f"{m}_update_{mode}_s"], out[f"{m}_update_{mode}_peak"] = u["seconds"], u["peak_bytes"]
            out[f"{m}_update_{mode}_delta"] = u["delta_bytes"]
            out[f"{m}_update_{mode}_tokens"] = u["trained_tokens"]
            out[f"{m}_update_{mode}_padded"] = u["padded_tokens"]
        for mode, u in rec[m].get("update_reset_groups", {}).items():
            out[f"{m}_reset_update_{mode}_s"], out[f"{m}_reset_update_{mode}_peak"] = u["seconds"], u["peak_bytes"]
            out[f"{m}_reset_update_{mode}_delta"] = u["delta_bytes"]
            out[f"{m}_reset_update_{mode}_tokens"] = u["trained_tokens"]
        gen = sum(v["seconds"] for v in ph.values())
        out[f"{m}_generated_tokens"] = sum(v["tokens"] for v in ph.values())
        for mode in ("naive", "shared"):
            out[f"{m}_step_{mode}_s"] = gen + rec[m]["update"][mode]["seconds"]
    for k, g in rec["generate"].items():
        if "error" not in g:
            out[f"generate_{k}_s"], out[f"generate_{k}_tokens"], out[f"generate_{k}_peak"] = (
                g["seconds"], g["tokens"], g["peak_bytes"])
    if rec.get("trl"):
        out["trl_step_s"], out["trl_step_peak"] = rec["trl"]["seconds"], rec["trl"]["peak_bytes"]
        out["trl_generated_tokens"] = rec["trl"]["tokens"]
        out["ours_grpo_over_trl"] = out["grpo_step_shared_s"] / out["trl_step_s"]
        out["ours_grpo_naive_over_trl"] = out["grpo_step_naive_s"] / out["trl_step_s"]
    out["fresh_update_speedup"] = out["grpo_update_naive_s"] / out["grpo_update_shared_s"]
    out["reset_update_speedup"] = out["srpo_reset_update_naive_s"] / out["srpo_reset_update_shared_s"]
    out["srpo_update_speedup"] = out["srpo_update_naive_s"] / out["srpo_update_shared_s"]
    out["packed_over_shared_grpo"] = out["grpo_update_packed_s"] / out["grpo_update_shared_s"]
    out["packed_over_shared_reset"] = out["srpo_reset_update_packed_s"] / out["srpo_reset_update_shared_s"]
    out["ckpt_time_shared"] = out["grpo_update_shared+ckpt_s"] / out["grpo_update_shared_s"]
    out["ckpt_time_naive"] = out["grpo_update_naive+ckpt_s"] / out["grpo_update_naive_s"]
    out["srpo_over_grpo_step"] = out["srpo_step_shared_s"] / out["grpo_step_shared_s"]
    if "generate_dynamic_s" in out:
        ours = out["grpo_generation_tokens"] / out["grpo_generation_s"]
        out["sampler_over_generate"] = ours / (out["generate_dynamic_tokens"] / out["generate_dynamic_s"])
    return out


def summarise(rounds: list[dict]) -> dict:
    counted = [flat(r) for r in rounds if r["round"] >= 1] or [flat(r) for r in rounds]
    keys = sorted(set().union(*counted))
    return {k: statistics.median(f[k] for f in counted if f.get(k) is not None) for k in keys
            if any(f.get(k) is not None for f in counted)}


def verdicts(s: dict) -> dict:
    """Each target of the issue: the measured median, the target and met / missed (None: not measured)."""
    def v(key, ok):
        return {"value": s.get(key), "target": TARGETS[key], "met": None if s.get(key) is None else ok(s[key])}
    return {"ours_grpo_over_trl": v("ours_grpo_over_trl", lambda x: x <= TARGETS["ours_grpo_over_trl"]),
            "reset_update_speedup": v("reset_update_speedup", lambda x: x >= TARGETS["reset_update_speedup"]),
            "fresh_update_speedup": v("fresh_update_speedup", lambda x: x >= TARGETS["fresh_update_speedup"]),
            "sampler_over_generate": v("sampler_over_generate", lambda x: x >= TARGETS["sampler_over_generate"])}


def run(a) -> dict:
    torch.set_num_threads(a.threads)
    load0 = os.getloadavg()
    pol, task, size = make_workload(a.size, a.seed, a.device, getattr(torch, a.dtype))
    if a.prompts:
        size = size.__class__(**{**size.__dict__, "prompts": a.prompts})
    a.prompts = size.prompts
    probs = task.sample(size.prompts * (a.rounds + 1), seed=a.seed)
    opt = torch.optim.AdamW([p for p in pol.model.parameters() if p.requires_grad], lr=1e-6, weight_decay=0.0)
    rounds: list[dict] = []

    def one_round(r: int, trl_rec=None):
        pr = probs[r * size.prompts:(r + 1) * size.prompts]
        # model.generate right after our GRPO generation (the paired sampler comparison), then our updates
        grpo = ours_step(pol, task, pr, "grpo", size, a, r, opt, between=lambda: generate_round(pol, task, pr, size,
                                                                                                  a, r))
        rec = {"round": r, "trl": trl_rec, "grpo": grpo, "generate": grpo.pop("between"),
               "srpo": ours_step(pol, task, pr, "srpo", size, a, r, opt)}
        rounds.append(rec)
        f = flat(rec)
        print(f"round {r}: GRPO step {f['grpo_step_shared_s']:.2f} s (naive update {f['grpo_step_naive_s']:.2f} s)"
              + (f", TRL {f['trl_step_s']:.2f} s" if "trl_step_s" in f else "")
              + f", SRPO step {f['srpo_step_shared_s']:.2f} s; update speed-up fresh {f['fresh_update_speedup']:.2f}x,"
              f" reset {f['reset_update_speedup']:.2f}x", flush=True)

    if a.no_trl:
        for r in range(a.rounds + 1):
            one_round(r)
    else:
        run_trl(pol, task, probs, size, a, lambda r, rec: one_round(r, rec))
    prof_kw = dict(temperature=0.7, top_p=0.95, max_thoughts=size.thoughts + 1,
                   max_thought_tokens=2 * size.thought_tokens, max_new_tokens=size.response_tokens + 16)
    prompts = [task.prompt(p) for p in probs[:size.prompts]]
    close = pol.encode(pol.fmt.answer_close)
    try:
        profile = {"ours": M.profile_ours(pol, prompts, 8, prof_kw),
                   "ours_top_p_1": M.profile_ours(pol, prompts, 8, {**prof_kw, "top_p": 1.0}),
                   "model.generate": M.hf_generate(pol, prompts, 8, max_new=size.response_tokens + 16,
                                                   temperature=0.7, top_p=0.95,
                                                   stop_ids=sorted(pol.eos_ids) + close[-1:], seed=1, profile=True)}
    except Exception as e:  # noqa: BLE001  (keep the rounds' results; say what failed)
        profile = {"error": f"{type(e).__name__}: {e}"[:500]}
    summ = summarise(rounds)
    return {"date": date.today().isoformat(), "config": vars(a), "workload": describe(pol, size),
            "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                        "load_avg_start": load0, "load_avg_end": os.getloadavg(), "platform": platform.platform(),
                        "torch": torch.__version__, "device": a.device,
                        "gpu": torch.cuda.get_device_name() if a.device == "cuda" else None},
            "summary": summ, "verdicts": verdicts(summ), "decode_profile": profile, "rounds": rounds}


# ----------------------------------------------------------------------------- table
def table(res: dict) -> str:
    s, w = res["summary"], res["workload"]
    mb = lambda k: f"{s[k] / 2 ** 20:,.0f}" if s.get(k) else ""  # noqa: E731
    dmb = lambda k: f" (+{s[k] / 2 ** 20:,.0f})" if s.get(k) is not None else ""  # noqa: E731
    L = [f"{w['params'] / 1e6:.1f}M-parameter Llama, vocabulary {w['tokenizer_vocab']}, {w['prompts']} prompts x 8, "
         f"prompt {w['prompt_tokens']} + response {w['thoughts']} x {w['thought_tokens']} tokens; "
         f"{res['machine']['torch_threads']} threads on {res['machine']['device']}, load average "
         f"{res['machine']['load_avg_start'][0]:.1f} -> {res['machine']['load_avg_end'][0]:.1f}; medians of "
         f"{max(1, res['config']['rounds'])} rounds", "",
         "| phase | contender | s | tokens | tokens/s | peak MB (+ over its start) |", "|---|---|---|---|---|---|"]

    def row(phase, who, key, tok_key=None):
        if s.get(f"{key}_s") is None:
            return
        tok = s.get(tok_key or f"{key}_tokens")
        tps, ntok = (f"{tok / s[key + '_s']:,.0f}", f"{tok:,.0f}") if tok else ("", "")
        mem = mb(key + "_peak") + dmb(key + "_delta")
        L.append(f"| {phase} | {who} | {s[key + '_s']:.2f} | {ntok} | {tps} | {mem} |")
    row("GRPO generation", "ours (Policy.generate)", "grpo_generation")
    row("GRPO generation", "model.generate (dynamic cache)", "generate_dynamic")
    row("GRPO generation", "model.generate (static cache)", "generate_static")
    for m in ("naive", "shared", "packed", "naive+ckpt", "shared+ckpt"):
        row("GRPO update", m, f"grpo_update_{m}")
    row("GRPO step", "ours, naive update", "grpo_step_naive", "grpo_generated_tokens")
    row("GRPO step", "ours, shared update", "grpo_step_shared", "grpo_generated_tokens")
    row("GRPO step", "TRL GRPOTrainer", "trl_step", "trl_generated_tokens")
    for ph in ("generation", "localization", "continuations"):
        row(f"SRPO {ph}", "ours", f"srpo_{ph}")
    row("SRPO update", "naive", "srpo_update_naive")
    row("SRPO update", "shared", "srpo_update_shared")
    for m in ("naive", "shared", "packed"):
        row("SRPO update, reset groups only", m, f"srpo_reset_update_{m}")
    row("SRPO step", "ours, shared update", "srpo_step_shared", "srpo_generated_tokens")
    L.append("")
    for k, v in res["verdicts"].items():
        val = "not measured" if v["value"] is None else f"{v['value']:.2f}"
        L.append(f"{k}: {val} (target {'<=' if k == 'ours_grpo_over_trl' else '>='} {v['target']}): "
                 f"{'not measured' if v['met'] is None else 'met' if v['met'] else 'MISSED'}")
    for k in ("srpo_update_speedup", "packed_over_shared_grpo", "packed_over_shared_reset", "ckpt_time_shared",
              "ckpt_time_naive", "srpo_over_grpo_step", "ours_grpo_naive_over_trl"):
        if s.get(k) is not None:
            L.append(f"{k}: {s[k]:.2f}")
    if "error" in res["decode_profile"]:
        return "\n".join(L + ["", f"decode profile failed: {res['decode_profile']['error']}"])
    p, g, p1 = (res["decode_profile"][k] for k in ("ours", "model.generate", "ours_top_p_1"))
    L += ["", "| decode loop (ms per step) | total | model forward | (of which KV cat) | (of which mask) | sampling "
          "| cache compaction | rest of the loop |", "|---|---|---|---|---|---|---|---|",
          f"| ours ({p['decode_steps']} steps) | {p['ms_per_step']:.2f} | {p['ms_forward_per_step']:.2f} | "
          f"{p['ms_kv_update_per_step']:.2f} | {p['ms_mask_per_step']:.2f} | "
          f"{p['ms_sample_per_step']:.2f} | {p['ms_compact_per_step']:.2f} | {p['ms_other_per_step']:.2f} |",
          f"| ours, top-p 1.0 ({p1['decode_steps']} steps) | {p1['ms_per_step']:.2f} | "
          f"{p1['ms_forward_per_step']:.2f} | "
          f"{p1['ms_kv_update_per_step']:.2f} | {p1['ms_mask_per_step']:.2f} | "
          f"{p1['ms_sample_per_step']:.2f} | {p1['ms_compact_per_step']:.2f} | {p1['ms_other_per_step']:.2f} |",
          f"| model.generate ({g['decode_steps']} steps) | {g['ms_per_step']:.2f} | {g['ms_forward_per_step']:.2f} |"
          f" {g['ms_kv_update_per_step']:.2f} | {g['ms_mask_per_step']:.2f} | {g['ms_overhead_per_step']:.2f} "
          "(all but the forward) | | |"]
    return "\n".join(L)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="cpu", choices=sorted(SIZES))
    ap.add_argument("--prompts", type=int, default=0, help="prompts per step (0: the size's default)")
    ap.add_argument("--rounds", type=int, default=3, help="counted rounds (plus one warm-up round)")
    ap.add_argument("--max_tokens", type=int, default=4096, help="padded tokens per forward/backward pass")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no_trl", action="store_true", help="skip TRL's GRPOTrainer")
    ap.add_argument("--no_static", action="store_true", help="skip model.generate with a static cache")
    ap.add_argument("--quick", action="store_true", help="size quick, 1 round, no TRL: seconds")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "realistic.json"))
    a = ap.parse_args(argv)
    if a.quick:
        a.size, a.rounds, a.no_trl = "quick", 1, True
    if a.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no GPU visible")
    res = run(a)
    print(table(res))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=str))
    print(f"wrote {out}")
    return res


if __name__ == "__main__":
    main()
