"""The tiny offline default: a small Llama built from a config, a character-level tokenizer made
with ``tokenizers``, and a supervised warm start on the built-in arithmetic task.

* :func:`micro_policy`: random-init micro model, in-process, for tests (< 1 s).
* :func:`ensure_tiny`: builds the warm-started default into a cache directory on first use
  (deterministic from the seed, minutes on two CPU cores) and returns that HF directory; it is
  loaded with ``Policy.from_pretrained`` like any other model. ``python -m llm.tiny`` builds it and
  prints its accuracy and localization accuracy.

The warm start mixes solution chains (``prompt -> t1;t2;...;[a]``) and localization examples
(``localization_prompt`` of a chain with one injected error -> a per-step check ending in ``[k]``,
see :func:`localization_target`). Measured (seed 0, 850 steps, ~5 min on one thread): 66% greedy
accuracy on 3-6 one-digit terms; localization of injected errors 44% vs 24% chance; on the model's
OWN failed chains it is below chance (15% vs 21%): it re-derives its own arithmetic mistakes.

The recipe is chosen so that RL can move the model (issue 6): the learning rate decays to 15% of
its peak, not to 2%. In 20 GRPO steps (probe of 256 problems x 8 samples, T=1), the build that
decayed to 2% (52% accuracy) gained at most 0.03 at lr 1e-5-5e-5 with 64 prompts/step and lost
reward at lr >= 1e-4 (one Adam step at 3e-4 took the batch reward from 0.40 to 0.18); one stopped
early at 750 steps (61%) stayed flat; builds decayed to 10-15% gained 0.04-0.08 at lr 5e-5. Accuracy swings widely with small recipe changes
(52-91% across the builds tried), so the 3-6 term task keeps this one inside the 30-70% target.
"""
from __future__ import annotations

import os
import random
import time
from pathlib import Path

import torch

from .localize import localization_prompt, parse_localization
from .policy import Policy
from .tasks import ArithTask
from .thoughts import TINY_FORMAT

TINY = "tiny"
SPECIALS = ["<pad>", "<eos>", "<unk>"]
CHARS = [chr(i) for i in range(32, 127)] + ["\n"]

TINY_TASK = dict(min_terms=3, max_terms=6, digits=1, ops="+-")
"""Default difficulty of the built-in task the tiny model is trained on (``ArithTask`` keywords)."""

TINY_ARCH = dict(hidden_size=96, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4,
                 num_key_value_heads=4, max_position_embeddings=512)
"""Architecture of the tiny default (about 0.3M parameters with the character vocabulary)."""

LOC_TOKENS = 96
"""Token budget of a localization reply in :func:`evaluate_tiny` (the longest trained reply is 88)."""

TRAIN = dict(steps=850, batch_size=64, lr=3e-3, warmup=50, lr_floor=0.15, loc_frac=0.5, weight_decay=0.01)
"""Supervised warm start: AdamW, linear warm-up then cosine decay to ``lr_floor * lr``; ``loc_frac`` of
each batch are localization examples."""


def char_tokenizer():
    """Character-level HF tokenizer (printable ASCII + newline, ``<pad>``, ``<eos>``, ``<unk>``), built
    with ``tokenizers`` (a BPE model without merges = one token per character; ``decoders.Fuse`` so
    decoding does not insert spaces)."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + CHARS)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(SPECIALS)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def build_llama(tokenizer, seed: int, **arch):
    """Random-init ``LlamaForCausalLM`` sized by ``arch`` for ``tokenizer`` (tied embeddings, no BOS),
    seeded with ``torch.manual_seed(seed)``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id, bos_token_id=None, tie_word_embeddings=True, **arch)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


_llama = build_llama  # the name the warm-start code below uses


def micro_policy(seed: int = 0) -> Policy:
    """Random-init micro Llama (hidden 32, 2 layers) + char tokenizer, TINY_FORMAT, on CPU."""
    tok = char_tokenizer()
    model = build_llama(tok, seed, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                   num_key_value_heads=2, max_position_embeddings=256)
    return Policy(model, tok, TINY_FORMAT)


SHIPPED = Path(__file__).resolve().parent / "assets" / "tiny"
"""The tiny default as built by ``python -m llm.tiny`` (seed 0) and committed (~1.4 MB), so a fresh clone
needs no 4-minute build; used whenever its recorded recipe equals :func:`recipe` (else rebuilt)."""


def tiny_dir() -> Path:
    """Cache directory of the warm-started default: ``$CREDIT_RESETS_CACHE/tiny`` (default
    ``~/.cache/credit_resets/tiny``)."""
    root = os.environ.get("CREDIT_RESETS_CACHE") or Path.home() / ".cache" / "credit_resets"
    return Path(root) / "tiny"


# --------------------------------------------------------------------------- warm start
def _pairs(task: ArithTask, rng: random.Random, n: int, kind: str, seed: int) -> list[tuple[str, str]]:
    """``n`` (prompt, target) pairs: solution chains (``kind="sol"``) or localization examples
    (``kind="loc"``: a chain with one injected error at a uniform step -> ``box(step)``)."""
    fmt = task.fmt
    out = []
    for p in task.sample(n, seed=seed, split="train"):
        if kind == "sol":
            sol = task.solution(p)
            out.append((task.prompt(p), fmt.join(sol[:-1]) + sol[-1]))
        else:
            step = rng.randint(1, len(p.meta["ops"]) + 1)
            chain = task.corrupt(p, step, rng)
            out.append((localization_prompt(task, p, chain), localization_target(chain, step, fmt)))
    return out


def localization_target(chain: list[str], step: int, fmt=TINY_FORMAT) -> str:
    """Reply the tiny default learns for a localization prompt over ``chain`` whose first wrong step is
    ``step``: for each step up to it, ``i:<left side>=<its true value>|<the value written>`` and a mark
    (``y`` equal, ``n`` not), then the boxed index, e.g. ``"1:3+5=8|8y2:8-2=6|7n[2]"``; an answer step
    is ``i:<running value>|<answer written>``. Every check is then between two adjacent numbers that a
    tiny model can produce (it computes the true value as when solving, then copies the written one);
    a direct arg-min over the prompt, or restating the written step, stayed at or below chance.
    The parser reads the last boxed integer, so the reply follows the localization contract."""
    parts, v = [], None
    for i, t in enumerate(chain[:step], 1):
        ans = fmt.extract_answer(t)
        if ans is None:
            left, written = t.split("=")
            true = eval(left)  # noqa: S307  (our own "a+b" / "a-b" / "a*b" text)
            parts.append(f"{i}:{left}={true}|{written}")
            v = int(written)
        else:
            parts.append(f"{i}:{v}|{ans}")
        parts[-1] += "n" if i == step else "y"
    return "".join(parts) + fmt.box(str(step))


def _batch(pol: Policy, pairs):
    """Right-padded (input_ids, attention_mask, loss_mask) with the loss on target tokens only."""
    seqs, starts = [], []
    for prompt, target in pairs:
        p = pol.encode_prompt(prompt)
        seqs.append(p + pol.encode(target))
        starts.append(len(p))
    T = max(map(len, seqs))
    ids = torch.full((len(seqs), T), pol.pad_id, dtype=torch.long)
    att = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
        att[i, :len(s)] = 1
    loss_mask = torch.zeros((len(seqs), T - 1))  # aligned with logprobs: predicts ids[:, 1:]
    for i, (s, st) in enumerate(zip(seqs, starts)):
        loss_mask[i, st - 1:len(s) - 1] = 1.0
    return ids, att, loss_mask


def train_tiny(*, seed: int = 0, steps: int | None = None, log_every: int = 50, verbose: bool = False,
               task_kw: dict | None = None, train_kw: dict | None = None) -> Policy:
    """Supervised warm start of the tiny default (see TRAIN); deterministic given the seed and the
    thread count. Returns the trained Policy (not saved)."""
    cfg = {**TRAIN, **(train_kw or {})}
    task_kw = {**TINY_TASK, **(task_kw or {})}
    if steps is not None:
        cfg["steps"] = steps
    tok = char_tokenizer()
    pol = Policy(_llama(tok, seed, **TINY_ARCH), tok, TINY_FORMAT)
    task = ArithTask(TINY_FORMAT, **task_kw)
    rng = random.Random(seed)
    opt = torch.optim.AdamW(pol.model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"],
                            betas=(0.9, 0.98))
    total = cfg["steps"]
    floor = cfg["lr_floor"]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / cfg["warmup"]) * 0.5 * (
        1 + torch.cos(torch.tensor(torch.pi * min(s, total) / total)).item()) * (1 - floor) + floor)
    pol.model.train()
    t0, bs = time.time(), cfg["batch_size"]
    for step in range(total):
        kind = "loc" if rng.random() < cfg["loc_frac"] else "sol"
        ids, att, lm = _batch(pol, _pairs(task, rng, bs, kind, seed=seed * 100_003 + step))
        logp = pol.logprobs(ids, att)  # (B, T-1)
        loss = -(logp * lm).sum() / lm.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(pol.model.parameters(), 1.0)
        opt.step()
        sched.step()
        if verbose and (step % log_every == 0 or step == total - 1):
            print(f"step {step:5d}  {kind}  loss {loss.item():.4f}  {time.time() - t0:6.1f} s", flush=True)
    pol.model.eval()
    pol.meta = {"task": {"name": "arith", **task_kw}, "train": {**cfg, "seed": seed}}
    return pol


def evaluate_tiny(pol: Policy, *, n: int = 300, seed: int = 1234, task_kw: dict | None = None) -> dict:
    """Greedy accuracy on ``n`` test problems; localization accuracy on chains with one injected
    error (vs chance ``E[1 / n_steps]``) and on the model's own failed chains (vs the step checker)."""
    task = ArithTask(pol.fmt, **(task_kw or TINY_TASK))
    probs = task.sample(n, seed=seed, split="test")
    outs = pol.generate([task.prompt(p) for p in probs], greedy=True, max_thoughts=8, max_thought_tokens=16)
    acc = sum(task.reward(p, o[0].text) for p, o in zip(probs, outs)) / n
    rng = random.Random(seed)
    steps, prompts, chance = [], [], 0.0
    for p in probs:
        k = len(p.meta["ops"]) + 1
        steps.append(rng.randint(1, k))
        prompts.append(localization_prompt(task, p, task.corrupt(p, steps[-1], rng)))
        chance += 1 / k
    replies = pol.complete(prompts, greedy=True, max_new_tokens=LOC_TOKENS)
    hits = [parse_localization(r, len(p.meta["ops"]) + 1, pol.fmt).index == s
            for r, p, s in zip(replies, probs, steps)]
    own, own_hit, own_chance = 0, 0, float("nan")  # the model's own wrong chains that have a checker-found first error
    fail = [(p, o[0]) for p, o in zip(probs, outs) if task.reward(p, o[0].text) == 0 and o[0].thoughts]
    fail = [(p, s, task.first_error(p, s.thoughts)) for p, s in fail]
    fail = [f for f in fail if f[2] is not None]
    if fail:
        rep = pol.complete([localization_prompt(task, p, s.thoughts) for p, s, _ in fail], greedy=True,
                           max_new_tokens=LOC_TOKENS)
        own = len(fail)
        own_chance = sum(1 / len(s.thoughts) for _, s, _ in fail) / own
        own_hit = sum(parse_localization(r, len(s.thoughts), pol.fmt).index == e for r, (p, s, e) in zip(rep, fail))
    return {"accuracy": acc, "loc_accuracy_injected": sum(hits) / n, "loc_chance_injected": chance / n,
            "loc_accuracy_own_failures": own_hit / own if own else float("nan"), "loc_chance_own_failures": own_chance,
            "n_own_failures": own, "n": n}


def recipe(seed: int = 0) -> dict:
    """Everything the tiny default depends on; a cached build with another recipe is rebuilt."""
    return {"seed": seed, "arch": TINY_ARCH, "task": TINY_TASK, "train": TRAIN, "version": 5}


def ensure_tiny(*, seed: int = 0, force: bool = False, verbose: bool = False) -> Path:
    """Path of the warm-started tiny default, building it (minutes on 2 CPU cores) if missing or if it
    was built with another recipe. Safe against concurrent builders (build in a temp dir, then rename)."""
    import json
    import shutil

    d = tiny_dir() if seed == 0 else tiny_dir().with_name(f"tiny-seed{seed}")
    meta_file = d / "credit_resets.json"
    want = json.loads(json.dumps(recipe(seed)))
    if not force and (d / "config.json").is_file() and meta_file.is_file():
        if json.loads(meta_file.read_text()).get("recipe") == want:
            return d
    shipped_meta = SHIPPED / "credit_resets.json"
    if not force and seed == 0 and shipped_meta.is_file():
        if json.loads(shipped_meta.read_text()).get("recipe") == want:
            return SHIPPED
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic, and robust on a shared machine (2 contended threads spin)
    try:
        pol = train_tiny(seed=seed, verbose=verbose)
    finally:
        torch.set_num_threads(threads)
    tmp = d.with_name(d.name + f".tmp{os.getpid()}")
    pol.save_pretrained(tmp, recipe=want)
    old = d.with_name(d.name + f".old{os.getpid()}")
    if d.exists():
        d.rename(old)
    try:
        tmp.rename(d)
    except OSError:  # another process finished first: keep its build
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    return d


warm_start_pairs = _pairs
"""Public name of the warm-start example generator (``(prompt, target)`` pairs; tests use it)."""
warm_start_batch = _batch
"""Public name of the warm-start batch builder (``input_ids, attention_mask, loss_mask``)."""


def main(argv=None):
    import argparse
    import json

    ap = argparse.ArgumentParser(description="Build the tiny offline default and print its accuracy.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true", help="rebuild even if cached")
    ap.add_argument("--steps", type=int, default=None, help="(experiments) train this many steps, do not cache")
    ap.add_argument("--terms", type=int, nargs=2, default=None, help="(experiments, with --steps) min max terms")
    ap.add_argument("--loc_frac", type=float, default=None, help="(experiments, with --steps)")
    ap.add_argument("--save", default=None, help="(experiments, with --steps) save the model here")
    a = ap.parse_args(argv)
    t0 = time.time()
    if a.steps is not None:
        torch.set_num_threads(1)
        tk = {} if a.terms is None else {"min_terms": a.terms[0], "max_terms": a.terms[1]}
        trk = {} if a.loc_frac is None else {"loc_frac": a.loc_frac}
        pol = train_tiny(seed=a.seed, steps=a.steps, verbose=True, task_kw=tk, train_kw=trk)
        if a.save:
            pol.save_pretrained(a.save)
    else:
        path = ensure_tiny(seed=a.seed, force=a.force, verbose=True)
        print(f"tiny default at {path}")
        pol = Policy.from_pretrained(str(path))
    print(f"built/loaded in {time.time() - t0:.1f} s; "
          f"{sum(p.numel() for p in pol.model.parameters()) / 1e6:.2f}M parameters")
    print(json.dumps(evaluate_tiny(pol, task_kw={k: v for k, v in pol.meta["task"].items() if k != "name"}),
                     indent=1))


if __name__ == "__main__":
    main()
