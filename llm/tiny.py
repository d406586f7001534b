"""The tiny offline default: a small Llama built from a config, a character-level tokenizer made
with ``tokenizers``, and a supervised warm start on the built-in arithmetic task (``docs/llm.md``,
"The tiny default").

* :func:`micro_policy`: random-init micro model, in-process, for tests (< 1 s).
* :func:`ensure_tiny`: the shipped weights when their recipe equals :func:`recipe`, else a build into a
  cache directory (deterministic from the seed, ~17-20 min on one thread) returned as an HF directory.
  ``python -m llm.tiny`` builds or loads it and prints its evaluation (:func:`evaluate_tiny`, the
  measurements in ``llm.tiny_eval``).

The warm start mixes solution chains (``prompt -> t1;t2;...;[a]``), localization examples (a chain with
one injected error -> a check of each step, undoing its operation, up to the first that fails, ending in
``[k]``, :func:`localization_target`) and
verification examples (:func:`verification_target`); from ``own_at`` on, also localization and
verification of the model's own sampled chains, labelled by the step checker. Measured numbers of the
shipped build and of every recipe tried: README, "The tiny default: localizer and verifier". The
learning rate decays to 15% of its peak, not to 2%, so that RL can still move the model (a build decayed
to 2% gained at most 0.03 in 20 GRPO steps).

The reply targets of the localization and verification examples live in ``llm.tiny_items``; with this
module they are one unit that :func:`recipe`'s version pins (a change that alters a target or a batch
means a rebuild).
"""
from __future__ import annotations

import math
import os
import random
import time
from pathlib import Path

import torch

from .localize import LOC_TOKENS_COMPACT, localization_prompt, parse_localization
from .tiny_items import (  # noqa: F401  (the reply targets; re-exported: part of the recipe)
    ITEMS,
    MISSING_ANSWER,
    _check_items,
    _items,
    _local_items,
    localization_target,
    verification_target,
)
from .policy import Policy
from .tasks import ArithTask
from .thoughts import TINY_FORMAT

TINY = "tiny"
SPECIALS = ["<pad>", "<eos>", "<unk>"]
CHARS = [chr(i) for i in range(32, 127)] + ["\n"]

TINY_TASK = {"min_terms": 3, "max_terms": 8, "digits": 1, "ops": "+-"}
"""Default difficulty of the built-in task the tiny model is trained on (``ArithTask`` keywords)."""

TINY_ARCH = {"hidden_size": 96, "intermediate_size": 256, "num_hidden_layers": 3, "num_attention_heads": 4,
                 "num_key_value_heads": 4, "max_position_embeddings": 512}
"""Architecture of the tiny default (about 0.3M parameters with the character vocabulary)."""

LOC_TOKENS = LOC_TOKENS_COMPACT
"""Token budget of a localization / verification reply in :func:`evaluate_tiny`: the compact prompts'
default (``llm.localize.LOC_TOKENS_COMPACT``, what ``RolloutConfig`` and ``ICSConfig`` use for the tiny
default; the replies stop at their box, well before)."""

EVAL_LENGTHS = (3, 4, 5, 6, 7, 8)
"""Chain lengths (terms) of the per-length table ``python -m llm.tiny`` prints."""

TRAIN = {"steps": 2000, "batch_size": 64, "lr": 3e-3, "warmup": 50, "lr_floor": 0.15, "weight_decay": 0.01,
             "mix": {"sol": 0.5, "loc": 0.3, "ver": 0.2}, "items": "inverse",
             "own_at": (1000, 1400, 1700), "own_prompts": 1500, "own_samples": 4, "own_temperature": 0.7, "own_top_p": 0.95,
             "mix_own": {"sol": 0.4, "loc": 0.1, "loc_own": 0.3, "ver": 0.05, "ver_own": 0.15}}
"""Supervised warm start: AdamW, linear warm-up then cosine decay to ``lr_floor * lr``. Each batch is one
kind of example drawn with the weights ``mix``; at each step of ``own_at`` the model samples
``own_samples`` chains for ``own_prompts`` training problems (``own_temperature``, ``own_top_p``: the RL
sampling settings), labelled by the step checker, and from then on batches are drawn with ``mix_own``,
which adds localization (``loc_own``) and verification (``ver_own``) examples on those own chains.

``"items"`` picks what each item of a localization / verification reply says (:data:`ITEMS`; absent:
``"resolve"``, the v6 recipe): ``"resolve"`` re-solves the problem (:func:`_check_items`), ``"local"``
checks each thought against the chain's previous value, ``"inverse"`` (v7, shipped: recipe E4 of
``experiments/tiny_recipes.md``) by undoing its operation on its written result (:func:`_local_items`);
``"local_answer"`` is ``"local"`` plus the item :data:`MISSING_ANSWER` for a chain with no answer
(:func:`verification_target`)."""

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
def _injected(task: ArithTask, p, rng: random.Random) -> tuple[list[str], int]:
    step = rng.randint(1, len(p.meta["ops"]) + 1)
    return task.corrupt(p, step, rng), step


def _pairs(task: ArithTask, rng: random.Random, n: int, kind: str, seed: int,
           items: str = "resolve") -> list[tuple[str, str]]:
    """``n`` (prompt, target) pairs of ``kind``: ``"sol"`` solution chains; ``"loc"`` localization of a
    chain with one injected error at a uniform step; ``"ver"`` the L3 question about the solution
    (half) or a chain with one injected error (half). ``items``: the reply items (:data:`ITEMS`)."""
    from .localize import verification_prompt

    fmt = task.fmt
    out = []
    for p in task.sample(n, seed=seed, split="train"):
        if kind == "sol":
            sol = task.solution(p)
            out.append((task.prompt(p), fmt.join(sol[:-1]) + sol[-1]))
        elif kind == "loc":
            chain, step = _injected(task, p, rng)
            out.append((localization_prompt(task, p, chain), localization_target(task, p, chain, step, items)))
        elif kind == "ver":
            chain = task.solution(p) if rng.random() < 0.5 else _injected(task, p, rng)[0]
            ans = fmt.extract_answer(chain[-1])
            out.append((verification_prompt(task, p, chain, ans), verification_target(task, p, chain, ans, items)))
        else:
            raise ValueError(f"kind: expected 'sol', 'loc' or 'ver', got {kind!r}")
    return out


def _own_pairs(pol: Policy, task: ArithTask, n: int, k: int, seed: int, temperature: float,
               top_p: float, items: str = "resolve") -> dict[str, list[tuple[str, str]]]:
    """Localization and verification examples on the model's OWN chains: ``k`` samples at
    ``temperature`` for each of ``n`` training problems, labelled by the step checker. ``"loc_own"``:
    the failed chains with a checker-found first error; ``"ver_own"``: every chain with thoughts.
    ``items``: the reply items (:data:`ITEMS`)."""
    from .localize import verification_prompt

    probs = task.sample(n, seed=seed, split="train")
    gen = torch.Generator().manual_seed(seed)
    outs = pol.generate([task.prompt(p) for p in probs], n=k, temperature=temperature, top_p=top_p,
                        max_thoughts=16, max_thought_tokens=16, generator=gen)
    loc, ver = [], []
    for p, row in zip(probs, outs):
        for s in row:
            if not s.thoughts:
                continue
            ver.append((verification_prompt(task, p, s.thoughts, s.answer),
                        verification_target(task, p, s.thoughts, s.answer, items)))
            e = task.first_error(p, s.thoughts)
            if e is not None and task.reward(p, s.text) == 0:
                loc.append((localization_prompt(task, p, s.thoughts), localization_target(task, p, s.thoughts, e, items)))
    return {"loc_own": loc, "ver_own": ver}


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


def _lr_lambda(cfg: dict):
    total, floor, warm = cfg["steps"], cfg["lr_floor"], cfg["warmup"]
    return lambda s: min(1.0, (s + 1) / warm) * (
        0.5 * (1 + math.cos(math.pi * min(s, total) / total)) * (1 - floor) + floor)


def train_tiny(*, seed: int = 0, steps: int | None = None, log_every: int = 50, verbose: bool = False,
               task_kw: dict | None = None, train_kw: dict | None = None, arch_kw: dict | None = None) -> Policy:
    """Supervised warm start of the tiny default (see TRAIN); deterministic given the seed and the
    thread count. Returns the trained Policy (not saved)."""
    cfg = {**TRAIN, **(train_kw or {})}
    task_kw = {**TINY_TASK, **(task_kw or {})}
    arch = {**TINY_ARCH, **(arch_kw or {})}
    if steps is not None:
        cfg["steps"] = steps
    items = cfg.get("items", "resolve")
    if items not in ITEMS:
        raise ValueError(f"train_kw['items']: expected one of {ITEMS}, got {items!r}")
    tok = char_tokenizer()
    pol = Policy(_llama(tok, seed, **arch), tok, TINY_FORMAT)
    task = ArithTask(TINY_FORMAT, **task_kw)
    rng = random.Random(seed)
    opt = torch.optim.AdamW(pol.model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"],
                            betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    pol.model.train()
    t0, bs, own = time.time(), cfg["batch_size"], {}
    own_at = set(cfg["own_at"])
    for step in range(cfg["steps"]):
        if step in own_at:  # refresh the pool of the model's own chains (sampled in eval mode, no grad)
            own = _own_pairs(pol, task, cfg["own_prompts"], cfg["own_samples"], seed * 100_003 + 7 * step + 1,
                             cfg["own_temperature"], cfg["own_top_p"], items)
            pol.model.train()
            if verbose:
                print(f"step {step:5d}  own chains: {len(own['loc_own'])} failures, {len(own['ver_own'])} chains",
                      flush=True)
        mix = cfg["mix_own"] if own else cfg["mix"]
        kinds, weights = zip(*sorted(mix.items()))
        kind = rng.choices(kinds, weights)[0]
        if kind in own:
            pairs = [own[kind][rng.randrange(len(own[kind]))] for _ in range(bs)]
        else:
            pairs = _pairs(task, rng, bs, kind, seed=seed * 100_003 + step, items=items)
        ids, att, lm = _batch(pol, pairs)
        logp = pol.logprobs(ids, att)  # (B, T-1)
        loss = -(logp * lm).sum() / lm.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(pol.model.parameters(), 1.0)
        opt.step()
        sched.step()
        if verbose and (step % log_every == 0 or step == cfg["steps"] - 1):
            print(f"step {step:5d}  {kind:7s}  loss {loss.item():.4f}  {time.time() - t0:6.1f} s", flush=True)
    pol.model.eval()
    pol.meta = {"task": {"name": "arith", **task_kw}, "train": {**cfg, "seed": seed}}
    return pol


def evaluate_tiny(pol: Policy, *, n: int = 300, seed: int = 1234, task_kw: dict | None = None,
                  own_prompts: int = 1000, own_samples: int = 4, lengths=(), length_prompts: int = 200,
                  loc_temperature: float = 0.3) -> dict:
    """The tiny default's numbers (see ``llm.tiny_eval`` for each measurement; rates carry Wilson 95%
    intervals):

    * ``accuracy``: greedy, on ``n`` test problems of the task ``task_kw`` (default :data:`TINY_TASK`);
    * ``loc_injected``: greedy localization of one injected error in the solution of each problem;
    * ``own``: ``own_samples`` chains for each of ``own_prompts`` test problems, sampled as RL does
      (T 0.7, top_p 0.95; 4,000 chains by default, so that a model right 80% of the time still fails
      more than 500 times): their success, ``localization`` of the failed ones at ``loc_temperature``
      (the SRPO call) and ``verification`` (the L3 question) of every answer;
    * ``lengths``: :func:`llm.tiny_eval.length_table` for each chain length in ``lengths``.
    """
    from . import tiny_eval as E

    base_kw = {**TINY_TASK, **(task_kw or {})}
    task = ArithTask(pol.fmt, **base_kw)
    probs = task.sample(n, seed=seed, split="test")
    outs = pol.generate([task.prompt(p) for p in probs], greedy=True, max_thoughts=20, max_thought_tokens=16)
    acc = sum(task.reward(p, o[0].text) for p, o in zip(probs, outs))
    rng = random.Random(seed)
    steps, prompts, chance = [], [], 0.0
    for p in probs:
        k = len(p.meta["ops"]) + 1
        steps.append(rng.randint(1, k))
        prompts.append(localization_prompt(task, p, task.corrupt(p, steps[-1], rng)))
        chance += 1 / k
    replies = pol.complete(prompts, greedy=True, max_new_tokens=LOC_TOKENS)
    hits = sum(parse_localization(r, len(p.meta["ops"]) + 1, pol.fmt).index == s
               for r, p, s in zip(replies, probs, steps))
    own_probs = task.sample(own_prompts, seed=seed + 1, split="test")
    own = E.sample_chains(pol, task, own_probs, own_samples, seed + 2)
    fails = E.failures(task, own_probs, own)
    wins = sum(task.reward(p, s.text) for p, row in zip(own_probs, own) for s in row)
    out = {"task": base_kw, "accuracy": E._rate(int(acc), n),
           "loc_injected": {"exact": E._rate(hits, n), "chance": chance / n},
           "own": {"sampling": E.SAMPLING, "prompts": own_prompts, "samples_per_prompt": own_samples,
                   "success": E._rate(int(wins), own_prompts * own_samples), "failures": len(fails),
                   "localization": E.own_localization(pol, task, fails, temperature=loc_temperature,
                                                      max_new_tokens=LOC_TOKENS, seed=seed + 3),
                   "verification": E.own_verification(pol, task, own_probs, own, temperature=loc_temperature,
                                                      max_new_tokens=LOC_TOKENS, seed=seed + 4)}}
    loc = out["own"]["localization"]
    loc["exact_over_chance"] = loc["exact"]["rate"] / loc["chance"] if fails else float("nan")
    if lengths:
        out["lengths"] = E.length_table(pol, ArithTask, base_kw, lengths, n=length_prompts, seed=seed + 5,
                                        loc_temperature=loc_temperature)
    return out


def recipe(seed: int = 0) -> dict:
    """Everything the tiny default depends on; a cached build with another recipe is rebuilt."""
    return {"seed": seed, "arch": TINY_ARCH, "task": TINY_TASK, "train": TRAIN, "version": 7}


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

    ap = argparse.ArgumentParser(description="Build the tiny offline default and print its evaluation (JSON).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true", help="rebuild even if cached")
    ap.add_argument("--model", default=None, help="evaluate this model directory instead of the default")
    ap.add_argument("--lengths", type=int, nargs="*", default=list(EVAL_LENGTHS),
                    help="chain lengths of the per-length table (none: skip it)")
    ap.add_argument("--out", default=None, help="also write the evaluation JSON here")
    ap.add_argument("--no_eval", action="store_true", help="build or load only (seconds; the evaluation takes ~15 min)")
    ap.add_argument("--steps", type=int, default=None, help="(experiments) train this many steps, do not cache")
    ap.add_argument("--terms", type=int, nargs=2, default=None, help="(experiments, with --steps) min max terms")
    ap.add_argument("--train_kw", type=json.loads, default=None, help="(experiments, with --steps) TRAIN overrides")
    ap.add_argument("--arch_kw", type=json.loads, default=None, help="(experiments, with --steps) TINY_ARCH overrides")
    ap.add_argument("--save", default=None, help="(experiments, with --steps) save the model here")
    a = ap.parse_args(argv)
    t0 = time.time()
    if a.model is not None:
        pol = Policy.from_pretrained(a.model)
    elif a.steps is not None:
        torch.set_num_threads(1)
        tk = {} if a.terms is None else {"min_terms": a.terms[0], "max_terms": a.terms[1]}
        pol = train_tiny(seed=a.seed, steps=a.steps, verbose=True, task_kw=tk, train_kw=a.train_kw, arch_kw=a.arch_kw)
        if a.save:
            pol.save_pretrained(a.save)
    else:
        path = ensure_tiny(seed=a.seed, force=a.force, verbose=True)
        print(f"tiny default at {path}")
        pol = Policy.from_pretrained(str(path))
    print(f"built/loaded in {time.time() - t0:.1f} s; "
          f"{sum(p.numel() for p in pol.model.parameters()) / 1e6:.2f}M parameters", flush=True)
    if a.no_eval:
        return
    t1 = time.time()
    res = evaluate_tiny(pol, task_kw={k: v for k, v in pol.meta["task"].items() if k != "name"}, lengths=a.lengths)
    res["eval_seconds"] = time.time() - t1
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
