"""Measurement pieces of ``realistic.py``: peak memory, phase clocks around the public ``Policy`` API, the
update (naive / shared prefix / packed, gradient checkpointing on or off) and the decode-loop profile.

The update here is the benchmark's own small function (the trainer's ``update`` is being refactored):
the step's samples cut into passes of at most ``max_tokens`` padded tokens, ``losses.policy_loss``
(REINFORCE, ``seq-mean-token-mean`` over the whole step: the global denominator), backward per pass,
gradient clipping at 1.0, one AdamW step. ``naive`` is today's forward (``Policy.collate`` ->
``model(...).logits`` -> ``losses.token_logprobs``, passes as ``llm.train.micro_batches`` cuts them);
``shared`` is ``llm.shared_prefix`` (passes from ``plan_passes``); ``packed`` is
``llm.shared_prefix_packed`` (same passes).
"""
from __future__ import annotations

import ctypes
import os
import threading
import time
from contextlib import contextmanager

import torch

from llm import shared_prefix as sp
from llm.losses import policy_loss, token_logprobs
from llm.shared_prefix_packed import packed_logprobs


# ----------------------------------------------------------------------------- clocks and memory
def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return -1


def _trim() -> None:
    """Give freed heap memory back to the OS (glibc), so that an RSS peak is the phase's own."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class Peak:
    """Peak memory of a block: CUDA ``max_memory_allocated``, else resident set size sampled every 2 ms.
    ``.peak`` (bytes) and ``.delta`` (peak minus the value at entry)."""

    def __init__(self, device):
        self.cuda = torch.device(device).type == "cuda"
        self.peak = self.delta = 0

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return self
        _trim()
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss())
        self.delta = self.peak - self.base
        return False


def measured(fn, device) -> tuple[float, object, Peak]:
    """(seconds, result, Peak) of ``fn()``."""
    with Peak(device) as pk:
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        dt = time.perf_counter() - t0
    return dt, out, pk


class TimedPolicy:
    """Proxy of a ``Policy`` that clocks ``generate`` (fresh chains), ``complete`` (localization) and
    ``continue_many`` (reset continuations), with the sampled tokens and the peak memory of each phase."""

    PHASES = {"generate": "generation", "complete": "localization", "continue_many": "continuations"}

    def __init__(self, policy):
        self._p = policy
        self.phases = {v: {"seconds": 0.0, "tokens": 0, "peak_bytes": 0, "calls": 0} for v in self.PHASES.values()}

    def __getattr__(self, name):
        attr = getattr(self._p, name)
        if name not in self.PHASES:
            return attr

        def timed(*args, **kw):
            ph = self.phases[self.PHASES[name]]
            dt, out, pk = measured(lambda: attr(*args, **kw), self._p.device)
            ph["seconds"] += dt
            ph["calls"] += 1
            ph["peak_bytes"] = max(ph["peak_bytes"], pk.peak)
            if name == "complete":
                ph["tokens"] += sum(len(self._p.encode(t)) for t in out)
            else:
                ph["tokens"] += sum(s.sampled_tokens for row in out for s in row)
            return out
        return timed


# ----------------------------------------------------------------------------- the update
def naive_passes(samples, max_tokens: int) -> list[list[int]]:
    """``llm.train.micro_batches`` rule: longest first, at most ``max_tokens`` padded tokens per pass."""
    lengths = [len(s.prompt_ids) + len(s.response_ids) for s in samples]
    out: list[list[int]] = []
    for i in sorted(range(len(samples)), key=lambda i: (-lengths[i], i)):
        if out and (len(out[-1]) + 1) * lengths[out[-1][0]] <= max_tokens:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def _forward(mode, policy, model, sub, adv):
    """(logp, entropy, mask, adv in row order, padded tokens) of one pass."""
    if mode == "naive":
        b = policy.collate(sub)
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], use_cache=False).logits
        logp, ent = token_logprobs(logits, b["input_ids"], with_entropy=True)
        return logp, ent, b["response_mask"][:, 1:], adv, int(b["input_ids"].numel())
    sb = sp.group_samples(sub, policy.pad_id).to(policy.device)
    fn = sp.shared_prefix_logprobs if mode == "shared" else packed_logprobs
    logp, ent = fn(model, sb, with_entropy=True)
    if mode == "shared":
        tok = sp.pass_cost(sb.shared_len.tolist(), sb.suffix_len.tolist())
    else:  # one packed row per group: shared part + all its suffixes
        width = sb.shared_len.clone().index_add_(0, sb.group_of, sb.suffix_len)
        tok = len(width) * int(width.max())
    return logp, ent, sb.suffix_mask, adv[sb.order], tok


def update(policy, opt, samples, adv: torch.Tensor, *, mode: str, max_tokens: int) -> dict:
    """One optimisation step on ``samples`` with advantages ``adv  # (N,)`` (module docstring)."""
    if mode not in ("naive", "shared", "packed"):
        raise ValueError(f"mode: expected naive, shared or packed, got {mode!r}")
    model = policy.model
    model.train()
    den = float(sum(len(s.response_ids) > s.prefix_len for s in samples))
    passes = naive_passes(samples, max_tokens) if mode == "naive" else sp.plan_passes(samples, max_tokens)
    opt.zero_grad(set_to_none=True)
    loss_sum, padded, trained = 0.0, 0, 0
    for idx in passes:
        logp, ent, mask, a, tok = _forward(mode, policy, model, [samples[j] for j in idx], adv[idx])
        out = policy_loss(logp, a.to(logp.device), mask, agg="seq-mean-token-mean", denominator=den)
        out.loss.backward()
        loss_sum += float(out.loss.detach())
        padded += tok
        trained += int(mask.sum())
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return {"passes": len(passes), "padded_tokens": padded, "trained_tokens": trained, "loss": loss_sum}


@contextmanager
def grad_checkpointing(model, on: bool):
    """Hugging Face gradient checkpointing on (non-reentrant) or off for the block."""
    if on:
        sp.enable_gradient_checkpointing(model)
    try:
        yield
    finally:
        if on:
            off = getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable
            off()


# ----------------------------------------------------------------------------- decode-loop profile
@contextmanager
def _nothing():
    yield


@contextmanager
def _clock_attr(obj, name: str, acc: dict, key: str, count_key: str | None = None):
    """Accumulate the wall time of ``obj.name(...)`` calls into ``acc[key]`` while the block runs (``obj``: an
    instance, a class or a module; restored exactly afterwards)."""
    own = obj.__dict__.get(name, _MISSING)
    orig = getattr(obj, name)

    def wrapped(*a, **kw):
        t0 = time.perf_counter()
        try:
            return orig(*a, **kw)
        finally:
            acc[key] += time.perf_counter() - t0
            if count_key:
                acc[count_key] += 1
    setattr(obj, name, wrapped)
    try:
        yield
    finally:
        if own is _MISSING:
            delattr(obj, name)
        else:
            setattr(obj, name, own)


_MISSING = object()


@contextmanager
def _inside_forward(acc: dict):
    """Clock two parts of every forward (prefill included, a small share): the KV-cache update
    (``DynamicLayer.update``: ``torch.cat`` of the whole cache per layer and step) and the attention-mask
    construction (``create_causal_mask`` in the Llama module)."""
    from contextlib import ExitStack

    from transformers.cache_utils import DynamicLayer
    from transformers.models.llama import modeling_llama

    with ExitStack() as stack:  # a transformers version without one of them: that part stays 0
        for obj, name, key in ((DynamicLayer, "update", "kv"), (modeling_llama, "create_causal_mask", "mask")):
            if hasattr(obj, name):
                stack.enter_context(_clock_attr(obj, name, acc, key))
        yield


def profile_ours(policy, prompts, n, kw) -> dict:
    """Where the time of one ``Policy.generate`` call goes: model forwards (prefill and decode steps),
    next-token sampling, KV-cache compaction when rows finish, building the samples, and the rest (the
    per-row Python loop over each step's tokens, masks, positions)."""
    from transformers import DynamicCache

    acc = dict(forward=0.0, forwards=0, sample=0.0, compact=0.0, make_samples=0.0, kv=0.0, mask=0.0)
    _ = policy._cache_kw  # resolve the cache keyword before the forward is wrapped
    model = policy.model
    orig_fwd = model.forward
    first = {}

    def fwd(*a, **k):
        t0 = time.perf_counter()
        try:
            return orig_fwd(*a, **k)
        finally:
            dt = time.perf_counter() - t0
            if not first:
                first["prefill"] = dt
            acc["forward"] += dt
            acc["forwards"] += 1
    model.forward = fwd
    try:
        with _clock_attr(policy, "_sample_next", acc, "sample"), \
                _clock_attr(DynamicCache, "batch_select_indices", acc, "compact"), \
                _clock_attr(policy, "_make_sample", acc, "make_samples"), _inside_forward(acc):
            t0 = time.perf_counter()
            out = policy.generate(prompts, n=n, **kw)
            sync(policy.device)
            total = time.perf_counter() - t0
    finally:
        del model.forward
    steps = acc["forwards"] - 1
    tokens = sum(s.sampled_tokens for row in out for s in row)
    decode = total - first["prefill"] - acc["make_samples"]
    per = lambda x: 1e3 * x / max(steps, 1)  # noqa: E731  (ms per decode step)
    return {"seconds": total, "tokens": tokens, "decode_steps": steps, "prefill_s": first["prefill"],
            "make_samples_s": acc["make_samples"], "ms_per_step": per(decode),
            "ms_forward_per_step": per(acc["forward"] - first["prefill"]), "ms_sample_per_step": per(acc["sample"]),
            "ms_kv_update_per_step": per(acc["kv"]), "ms_mask_per_step": per(acc["mask"]),
            "ms_compact_per_step": per(acc["compact"]),
            "ms_other_per_step": per(decode - (acc["forward"] - first["prefill"]) - acc["sample"] - acc["compact"]),
            "ms_overhead_per_step": per(decode - (acc["forward"] - first["prefill"]))}


def hf_generate(policy, prompts, n, *, max_new: int, temperature: float, top_p: float, stop_ids, seed: int,
                static: bool = False, profile: bool = False) -> dict:
    """``model.generate`` on the same work: sampled, stopping at EOS or the answer's closing token."""
    tok = policy.tokenizer
    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=True).to(policy.device)
    model = policy.model
    acc = dict(forward=0.0, forwards=0, kv=0.0, mask=0.0)
    extra = {"cache_implementation": "static"} if static else {}
    torch.manual_seed(seed)
    model.eval()

    def run():
        with torch.inference_mode():
            return model.generate(**enc, do_sample=True, temperature=temperature, top_p=top_p, top_k=0,
                                  num_return_sequences=n, max_new_tokens=max_new, pad_token_id=policy.pad_id,
                                  eos_token_id=list(stop_ids), **extra)
    if profile:
        orig = model.forward

        def fwd(*a, **k):
            t0 = time.perf_counter()
            try:
                return orig(*a, **k)
            finally:
                acc["forward"] += time.perf_counter() - t0
                acc["forwards"] += 1
        model.forward = fwd
    try:
        with (_inside_forward(acc) if profile else _nothing()):
            dt, out, pk = measured(run, policy.device)
    finally:
        if profile:
            del model.forward
    gen = out[:, enc["input_ids"].shape[1]:]
    tokens = int((gen != policy.pad_id).sum())
    res = {"seconds": dt, "tokens": tokens, "peak_bytes": pk.peak, "new_positions": int(gen.shape[1])}
    if profile:
        steps = max(acc["forwards"] - 1, 1)
        res.update(decode_steps=acc["forwards"] - 1, ms_forward_per_step=1e3 * acc["forward"] / acc["forwards"],
                   ms_per_step=1e3 * dt / acc["forwards"],
                   ms_overhead_per_step=1e3 * (dt - acc["forward"]) / acc["forwards"], forward_s=acc["forward"],
                   ms_kv_update_per_step=1e3 * acc["kv"] / acc["forwards"],
                   ms_mask_per_step=1e3 * acc["mask"] / acc["forwards"],
                   steps_note=f"{steps} decode steps + 1 prefill")
    return res
