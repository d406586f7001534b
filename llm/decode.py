"""The decode engine: one batched KV-cache loop that samples thought chains or free-form completions.

Every function takes a policy-like object ``pol`` (``llm.policy.Policy``) for its model, tokenizer
pieces, pad / EOS ids, format, context length and device; none of them imports the policy.

* :func:`decode`: prefill each prompt (+ given prefix) once, left padded, fan its cache out to its ``n``
  rows (``batch_repeat_interleave``), then one forward per step over the live rows; a row leaves the
  batch when it finishes (answer, ``max_thoughts``, budget, EOS), so the cache is compacted with
  ``batch_select_indices``. The cache appends in place (``llm.kv_cache``: preallocated buffers, no
  ``torch.cat`` of the whole cache per layer and step); next tokens come from ``llm.sampling.sample_next``
  (nucleus sampling without a sort of the vocabulary). Thoughts are tracked with ``llm.thoughts.ThoughtScanner``.
* KV reuse (:class:`KVRows`): ``keep_kv=True`` hands each finished row's keys/values back on
  ``Sample.kv``; ``kv_from[i]`` gives prompt ``i`` the saved rows of an earlier sample, and the prefill
  then copies the keys/values of their longest common token prefix and runs only the rest through the
  model (a continuation's prompt + prefix, or a localization prompt that quotes the parent chain
  verbatim, costs the tokens it adds, not its length). Exact up to float rounding: the reused keys/values
  are the ones the model computed for those very tokens (same positions).
* Each decode step of a Llama model runs through :func:`llm.lean_step.lean_step` (its modules without the
  model-level call, or for a plain model their aten calls: the same logits, ~0.5-0.8 ms less per step on
  a CPU); other models through ``forward``.
* The per-thought cap and the budget follow the paper by default ("Credit Assignment with Resets in LM
  Reasoning", whose generator samples one thought per call with ``max_tokens_per_thought``):
  ``thought_cap="keep"``: a thought that reaches ``max_thought_tokens`` without a delimiter is kept as
  a thought (its end is recorded in ``Sample.cap_ends``; no delimiter is inserted) and generation goes
  on with the next thought, unless the capped thought has opened an answer (the paper's generator
  stops at a thought holding ``\\boxed{``: the chain ends there, finish "budget", no answer);
  ``"end"``: it ends the chain (cut back to the last complete thought, so a chain without an answer
  scores 0). ``budget_scope="response"``: ``max_new_tokens`` counts the given prefix plus the sampled
  tokens (the whole response); ``"sampled"``: sampled tokens only.

Shape letters (``docs/architecture.md``): B live rows, L prompt length (left padded), V vocabulary.
Sampling is reproducible on CPU given a ``torch.Generator``: rows finish and leave the batch in a
deterministic order, and each step draws its uniforms from the generator in row order
(``llm.sampling``; the token streams differ from the earlier ``torch.multinomial`` sampler for the same
seed, the distribution does not). Greedy decoding is an argmax, as before.
"""
from __future__ import annotations

import inspect
import weakref
from dataclasses import dataclass, field

import torch

from .kv_cache import decode_cache, reserve
from .lean_step import base_model, lean_step
from .sampling import sample_next
from .thoughts import ThoughtScanner, thought_ends, thought_ends_exact

RESERVE_CHUNK = 1024
"""decode positions reserved in the KV buffers at the start (all of the budget when smaller); a longer
decode grows them by doubling (``llm.kv_cache``)"""

FINISH = ("answer", "max_thoughts", "budget", "eos")

THOUGHT_CAPS = ("keep", "end")
BUDGET_SCOPES = ("response", "sampled")

CHAIN_DEFAULTS = dict(temperature=1.0, top_p=1.0, max_thoughts=20, max_thought_tokens=256, max_new_tokens=None,
                      greedy=False, generator=None, thought_cap="keep", budget_scope="response")
"""Keywords of ``Policy.generate`` / ``continue_from`` / ``continue_many`` and their defaults."""


@dataclass
class Sample:
    """One sampled response."""

    prompt_ids: list[int]
    response_ids: list[int]
    """Prefix (given) + sampled tokens."""
    prefix_len: int
    """The first ``prefix_len`` tokens of ``response_ids`` were given, not sampled (0 for fresh chains)."""
    text: str
    """Decoded response (prefix included)."""
    thoughts: list[str]
    thought_ends: list[int]
    """Token offset in ``response_ids`` where each thought ends (exclusive)."""
    answer: str | None
    finish: str
    """One of FINISH: "answer" | "max_thoughts" | "budget" (cut back to the last complete thought; also a
    thought capped inside an unclosed answer) | "eos"."""
    sampled_tokens: int = 0
    """Tokens actually sampled for this row (before a budget cut-back; EOS included): the decode work done."""
    cap_ends: list[int] = field(default_factory=list)
    """The entries of ``thought_ends`` where a thought was ended by the per-thought token cap rather than by
    a delimiter (``thought_cap="keep"``); give the ones inside a prefix to ``continue_from``."""
    kv: "KVRows | None" = field(default=None, repr=False, compare=False)
    """The row's keys/values when the decode was asked to keep them (``keep_kv=True``), else None. The
    rollout builders take them off the samples before returning."""


@dataclass
class KVRows:
    """Keys/values a decode computed for one row: they cover the tokens ``ids`` (prompt + given prefix +
    sampled tokens fed back, in order); ``layers[l]`` is the pair (keys, values) of layer ``l``, each
    ``(H, len(ids), D)``, positions ``0..len(ids)-1``."""

    ids: list[int]
    layers: list[tuple[torch.Tensor, torch.Tensor]]


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two token lists (slice comparisons, binary search)."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def sampling_kwargs(cfg=None, **override) -> dict:
    """Chain keywords from a config holding some of ``temperature, top_p, max_thoughts,
    max_thought_tokens, max_new_tokens, thought_cap, budget_scope`` (e.g. ``RolloutConfig``,
    ``ICSConfig``), then ``override``; fields the config lacks are left out (the defaults apply)."""
    keys = ("temperature", "top_p", "max_thoughts", "max_thought_tokens", "max_new_tokens", "thought_cap",
            "budget_scope")
    out = {k: getattr(cfg, k) for k in keys if cfg is not None and hasattr(cfg, k)}
    out.update(override)
    return out


def chain_params(kw: dict) -> dict:
    """:data:`CHAIN_DEFAULTS` updated with ``kw``; unknown keywords raise TypeError."""
    bad = set(kw) - set(CHAIN_DEFAULTS)
    if bad:
        raise TypeError(f"unexpected keyword(s) {sorted(bad)}; expected some of {sorted(CHAIN_DEFAULTS)}")
    return {**CHAIN_DEFAULTS, **kw}


def check_params(n, temperature, top_p, max_thoughts, max_thought_tokens, max_new_tokens, greedy,
                 thought_cap="keep", budget_scope="response") -> int:
    """Validate the sampling settings; returns the token budget (``max_new_tokens`` or its default)."""
    if thought_cap not in THOUGHT_CAPS:
        raise ValueError(f"thought_cap: expected one of {THOUGHT_CAPS}, got {thought_cap!r}")
    if budget_scope not in BUDGET_SCOPES:
        raise ValueError(f"budget_scope: expected one of {BUDGET_SCOPES}, got {budget_scope!r}")
    if not (isinstance(max_thoughts, int) and max_thoughts >= 1):
        raise ValueError(f"max_thoughts: expected a positive int, got {max_thoughts!r}")
    if not (isinstance(max_thought_tokens, int) and max_thought_tokens >= 1):
        raise ValueError(f"max_thought_tokens: expected a positive int, got {max_thought_tokens!r}")
    if max_new_tokens is None:
        max_new_tokens = max_thoughts * max_thought_tokens
    if not (isinstance(max_new_tokens, int) and max_new_tokens >= 1):
        raise ValueError(f"max_new_tokens: expected a positive int, got {max_new_tokens!r}")
    if not greedy and not (temperature > 0):
        raise ValueError(f"temperature: expected > 0 (or greedy=True), got {temperature!r}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p: expected in (0, 1], got {top_p!r}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    return max_new_tokens


# ------------------------------------------------------------------------------ model plumbing
_CACHE_KW: "weakref.WeakKeyDictionary[torch.nn.Module, str]" = weakref.WeakKeyDictionary()


def cache_keyword(model: torch.nn.Module) -> str:
    """Name of the forward's cache argument, read from the base model: ``cache`` (newer transformers;
    passing ``past_key_values`` there is deprecated) or ``past_key_values``. Remembered per model
    object, so a model swapped in (e.g. by ``get_peft_model``) is inspected afresh."""
    kw = _CACHE_KW.get(model)
    if kw is None:
        params = inspect.signature(base_model(model).forward).parameters
        kw = _CACHE_KW[model] = "cache" if "cache" in params else "past_key_values"
    return kw


def kv_reusable(cache) -> bool:
    """Whether saved rows can be copied into ``cache``: every layer a plain full-attention layer
    (``DynamicLayer`` or :class:`llm.kv_cache.BufferLayer`)."""
    from transformers.cache_utils import DynamicLayer

    from .kv_cache import BufferLayer
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) in (DynamicLayer, BufferLayer) for layer in layers)


def prefill(pol, seqs: list[list[int]], kv_from: list | None = None):
    """Left-padded forward of ``seqs`` into a fresh :func:`llm.kv_cache.decode_cache`; returns (last logits
    (B, V), cache, mask (B, L), next pos (B,)). ``kv_from[i]`` (a :class:`KVRows` or None): reuse its
    keys/values for the longest common prefix of ``seqs[i]`` and its ids (:func:`prefill_reusing`)."""
    if kv_from is not None and any(kv is not None for kv in kv_from):
        cache = decode_cache(pol.model.config)
        if kv_reusable(cache):
            return prefill_reusing(pol, seqs, kv_from, cache)
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pol.pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), L), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, L - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[i, L - len(s):] = 1
    ids, mask = ids.to(pol.device), mask.to(pol.device)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, L)
    cache = decode_cache(pol.model.config)  # filled in place by the forward passes
    out = pol.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1,
                    **{cache_keyword(pol.model): cache})
    return out.logits[:, -1, :], cache, mask, pos[:, -1] + 1


def prefill_reusing(pol, seqs: list[list[int]], kv_from: list, cache):
    """:func:`prefill` from saved rows. Row ``i`` reuses the keys/values of its first ``m_i`` tokens
    (at most its common prefix with ``kv_from[i].ids``, at most ``len - 1``: the last token is fed for
    its logits) and feeds the rest; every row feeds the same number ``S`` of tokens (a row with a shorter
    match re-feeds more of its own), so the saved part is left padded to ``M = max m_i`` positions and
    the fed part ``(B, S)`` follows it (a row without reuse is left padded within it). Mask ``(B, M + S)``."""
    lens = [len(q) for q in seqs]
    match = [0 if kv is None else min(common_prefix(q, kv.ids), n - 1) for q, kv, n in zip(seqs, kv_from, lens)]
    S = max(n - m for n, m in zip(lens, match))
    m = [max(0, n - S) for n in lens]  # <= match[i]
    M, B = max(m), len(seqs)
    mask = torch.zeros((B, M + S), dtype=torch.long)
    ids = torch.full((B, S), pol.pad_id, dtype=torch.long)
    for i, q in enumerate(seqs):
        mask[i, M - m[i]:M] = 1
        fed = q[m[i]:]
        ids[i, S - len(fed):] = torch.tensor(fed, dtype=torch.long)
        mask[i, M + S - len(fed):] = 1
    if M:
        for layer_idx in range(len(cache.layers)):
            k0, v0 = next(kv for kv in kv_from if kv is not None).layers[layer_idx]
            K = k0.new_zeros((B, k0.shape[0], M, k0.shape[2]))
            V = v0.new_zeros((B, v0.shape[0], M, v0.shape[2]))
            for i, kv in enumerate(kv_from):
                if m[i]:
                    k, v = kv.layers[layer_idx]
                    K[i, :, M - m[i]:] = k[:, :m[i]]
                    V[i, :, M - m[i]:] = v[:, :m[i]]
            cache.update(K.to(pol.device), V.to(pol.device), layer_idx)
    ids, mask = ids.to(pol.device), mask.to(pol.device)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)[:, M:]  # (B, S): each fed token's position in its row
    out = pol.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1,
                    **{cache_keyword(pol.model): cache})
    return out.logits[:, -1, :], cache, mask, pos[:, -1] + 1


def _row_kv(cache, j: int, start: int, ids: list[int]) -> KVRows:
    """Copy of batch row ``j``'s keys/values from cache slot ``start`` on (its first token) to the end."""
    return KVRows(ids=ids, layers=[(layer.keys[j, :, start:].clone(), layer.values[j, :, start:].clone())
                                   for layer in cache.layers])


# ------------------------------------------------------------------------------ the loop
@torch.inference_mode()
def decode(pol, prompts, prefixes, n, *, mode, temperature, top_p, max_thoughts, max_thought_tokens,
           max_new_tokens, greedy, generator, thought_cap="keep", budget_scope="response", prefix_cap_ends=None,
           stop_at_answer=True, keep_kv=False, kv_from=None) -> list[list[Sample]]:
    """``n`` samples per (prompt ids, prefix ids) pair; ``mode`` "chain" (thoughts counted, stop at
    ``max_thoughts``) or "free" (delimiters ignored; ``stop_at_answer=False`` also ignores answers, so a
    reply runs to EOS or ``max_new_tokens``). ``prefix_cap_ends[i]``: offsets in ``prefixes[i]`` where a
    thought was ended by the cap (``Sample.cap_ends`` of the sample it was cut from). ``keep_kv``: put
    each row's keys/values on ``Sample.kv``; ``kv_from[i]``: a :class:`KVRows` (or None) whose common
    prefix with prompt + prefix ``i`` is not recomputed (module docstring). Validates the settings; runs
    in eval mode."""
    if kv_from is not None and len(kv_from) != len(prompts):
        raise ValueError(f"kv_from: expected one entry per prompt ({len(prompts)}), got {len(kv_from)}")
    max_new_tokens = check_params(n, temperature, top_p, max_thoughts, max_thought_tokens, max_new_tokens, greedy,
                                  thought_cap, budget_scope)
    caps0 = [sorted(int(c) for c in (prefix_cap_ends[i] if prefix_cap_ends else ()) or ())
             for i in range(len(prompts))]
    for i, c in enumerate(caps0):
        if c and not (0 < c[0] and c[-1] <= len(prefixes[i])):
            raise ValueError(f"prefix_cap_ends[{i}]: expected offsets in (0, {len(prefixes[i])}], got {c}")
    was_training = pol.model.training
    pol.model.eval()
    opts = dict(mode=mode, temperature=temperature, top_p=top_p, max_thoughts=max_thoughts,
                max_thought_tokens=max_thought_tokens, max_new_tokens=max_new_tokens, greedy=greedy,
                generator=generator, keep_long=thought_cap == "keep", count_prefix=budget_scope == "response",
                stop_at_answer=stop_at_answer or mode == "chain", keep_kv=keep_kv, kv_from=kv_from)
    try:
        gen, finish, caps, kv = _loop(pol, prompts, prefixes, caps0, n, **opts)
    finally:
        pol.model.train(was_training)
    owner = [i // n for i in range(len(gen))]
    samples = [make_sample(pol, prompts[owner[r]], prefixes[owner[r]], gen[r], finish[r] or "budget", mode,
                           caps[r]) for r in range(len(gen))]
    for r, s in enumerate(samples):
        s.sampled_tokens = len(gen[r]) + (finish[r] == "eos")
        s.kv = kv[r]
    return [samples[i * n:(i + 1) * n] for i in range(len(prompts))]


def _loop(pol, prompts, prefixes, caps0, n, *, mode, temperature, top_p, max_thoughts, max_thought_tokens,
          max_new_tokens, greedy, generator, keep_long, count_prefix, stop_at_answer, keep_kv=False, kv_from=None):
    """The decode loop proper; returns the sampled ids, the finish reason, the cap ends and the kept
    keys/values (None unless ``keep_kv``) of every row.

    The per-token checks stay in this one loop on purpose (about 75 lines): they share the row lists, and
    splitting them would hide the order of the checks (EOS, answer, delimiter, per-thought cap, budget),
    which decides every ``Sample.finish``; the batch compaction and the model call are :func:`_step`."""
    fmt, pieces = pol.fmt, pol.pieces
    seqs = [p + q for p, q in zip(prompts, prefixes)]
    logits, cache, mask, pos = prefill(pol, seqs, kv_from)
    keep_kv = keep_kv and kv_reusable(cache)
    width0 = width = mask.shape[1]  # cache slots filled; row r's first token sits at slot width0 - len(seq)
    reserve(cache, min(max_new_tokens, RESERVE_CHUNK))  # before the fan-out: the copy is of the prompts' rows only
    if n > 1:  # fan each prompt's cache out to its n samples: never re-encode the prompt / prefix
        cache.batch_repeat_interleave(n)
        logits, mask, pos = (x.repeat_interleave(n, dim=0) for x in (logits, mask, pos))
    B = len(prompts) * n
    owner = [i // n for i in range(B)]                  # row -> prompt
    gen = [[] for _ in range(B)]                        # sampled ids per row
    pre_len = [len(prefixes[o]) for o in owner]
    pre_text = [pol.decode(q) for q in prefixes]
    caps = [list(caps0[o]) for o in owner]              # cap ends (offsets in prefix + sampled ids)
    # the current thought of each row (empty when the prefix ends at a cap end)
    scan = [ThoughtScanner(fmt, "" if caps0[o] and caps0[o][-1] == pre_len[r] else pre_text[o])
            for r, o in enumerate(owner)]
    cur_tok = [0] * B                                   # tokens in the current thought
    n_th = [pre_text[o].count(fmt.delimiter) + len(caps0[o]) if mode == "chain" else 0 for o in owner]
    used0 = pre_len if count_prefix else [0] * B        # budget already used by the given prefix
    finish = [None] * B
    live = list(range(B))                               # original row of each live batch row
    ctx_left = [(pol.max_len or 10 ** 12) - len(prompts[o]) - len(prefixes[o]) for o in owner]
    # no padding anywhere (one prompt, or equal lengths): a one-token step attends to the whole cache,
    # so the mask can be left out, which skips building a 4-D mask in every step
    no_pad = bool(mask.all())
    cache_kw = cache_keyword(pol.model)
    lean = lean_step(pol.model)  # asked once per loop (llm.lean_step: a plain model's step reads its modules now)
    kv = [None] * B
    while live:
        tok = sample_next(logits, temperature, top_p, greedy, generator).tolist()  # (B_live,)
        keep = []
        for j, r in enumerate(live):
            t = tok[j]
            if t in pol.eos_ids:
                finish[r] = "eos"
                continue
            gen[r].append(t)
            piece = pieces[t]
            scan[r].append(piece)
            cur_tok[r] += 1
            if stop_at_answer and scan[r].answer_closed(piece):
                finish[r] = "answer"
                continue
            if mode == "chain":
                ended = scan[r].take_delimiter()
                if not ended and cur_tok[r] >= max_thought_tokens:
                    if not keep_long:
                        finish[r] = "budget"
                        continue
                    ended = True
                    caps[r].append(pre_len[r] + len(gen[r]))
                    if fmt.answer_open in scan[r].current:  # capped inside its answer: the chain ends here
                        finish[r] = "budget"
                        continue
                    scan[r].restart()
                if ended:
                    n_th[r] += 1
                    cur_tok[r] = 0
                    if n_th[r] >= max_thoughts:
                        finish[r] = "max_thoughts"
                        continue
            if used0[r] + len(gen[r]) >= max_new_tokens or len(gen[r]) >= ctx_left[r]:
                finish[r] = "budget"
                continue
            keep.append(j)
        if keep_kv and len(keep) < len(live):  # save the finished rows before the cache drops them
            kept = set(keep)
            for j, r in enumerate(live):
                if j not in kept:
                    q, start = seqs[owner[r]] + gen[r], width0 - len(seqs[owner[r]])
                    kv[r] = _row_kv(cache, j, start, q[:width - start])
        if not keep:
            break
        live = [live[j] for j in keep]
        logits, pos, mask = _step(pol, cache, [tok[j] for j in keep], keep, pos, mask, no_pad, cache_kw, lean)
        width += 1
    return gen, finish, caps, kv


def _step(pol, cache, tok: list[int], keep: list[int], pos, mask, no_pad: bool, cache_kw: str, lean=None):
    """One decode step of the rows still live: drop the finished rows from the cache, positions and mask
    (``keep``: the batch rows that go on), then run their sampled tokens ``tok`` through the model
    (``lean``: :func:`llm.lean_step.lean_step` of it, else its ``forward``). Returns the next logits
    ``(B_live, V)``, positions and mask."""
    if len(keep) < pos.shape[0]:
        idx = torch.tensor(keep, device=pol.device)
        cache.batch_select_indices(idx)
        pos = pos[idx]
        if not no_pad:
            mask = mask[idx]
    if not no_pad:
        mask = torch.cat([mask, mask.new_ones((len(tok), 1))], dim=1)  # (B_live, L + t)
    step_ids = torch.tensor(tok, device=pol.device).unsqueeze(1)    # (B_live, 1)
    if lean is not None:  # the same computation without the model-level call (llm.lean_step)
        return lean(step_ids, pos.unsqueeze(1), None if no_pad else mask, cache), pos + 1, mask
    out = pol.model(input_ids=step_ids, attention_mask=None if no_pad else mask,
                    position_ids=pos.unsqueeze(1), use_cache=True, **{cache_kw: cache})
    return out.logits[:, -1, :], pos + 1, mask


def _delimited(pol, ids: list[int], capped: bool) -> tuple[list[str], list[int]]:
    """Thoughts and thought ends of ``ids`` split at delimiters. ``capped``: the piece after the last
    delimiter is a thought ended by the cap (kept); otherwise it counts only if it holds an answer."""
    fmt = pol.fmt
    text = pol.decode(ids)
    ends = thought_ends(pol.pieces, ids, fmt)
    parts = text.split(fmt.delimiter)
    if capped:
        ends = [e for e in ends if e < len(ids)]
        if len(ends) != len(parts) - 1:  # pieces do not concatenate to the text: exact (slower) search
            ends = [e for e in thought_ends_exact(pol.decode, ids, fmt) if e < len(ids)]
        return [p.strip() for p in parts], ends + [len(ids)]
    thoughts = fmt.split(text)
    if len(thoughts) != len(ends):
        ends = thought_ends_exact(pol.decode, ids, fmt)
    return thoughts, ends


def segment_thoughts(pol, ids: list[int], cap_ends: list[int]) -> tuple[list[str], list[int]]:
    """Thoughts (text) and their token ends for a response ``ids``: split at every cap end, and within
    each piece at the delimiters (``ThoughtFormat.split``; a trailing piece counts when it holds an
    answer). Without cap ends this is ``fmt.split(decode(ids))`` with ``thought_ends``."""
    thoughts, ends, a = [], [], 0
    for b in cap_ends:
        th, e = _delimited(pol, ids[a:b], capped=True)
        thoughts += th
        ends += [a + x for x in e]
        a = b
    th, e = _delimited(pol, ids[a:], capped=False)
    return thoughts + th, ends + [a + x for x in e]


def make_sample(pol, prompt_ids, prefix_ids, gen, finish, mode, cap_ends=()) -> Sample:
    """A Sample from given + sampled ids; a chain stopped by the budget is cut back to its last complete
    thought (never into the given prefix)."""
    ids = list(prefix_ids) + gen
    fmt = pol.fmt
    if mode == "free":
        text = pol.decode(ids)
        return Sample(list(prompt_ids), ids, len(prefix_ids), text, [], [], fmt.extract_answer(text), finish)
    caps = list(cap_ends)
    thoughts, ends = segment_thoughts(pol, ids, caps)
    if finish == "budget":
        cut = max([len(prefix_ids)] + ends)
        if cut < len(ids):
            ids, caps = ids[:cut], [c for c in caps if c <= cut]
            thoughts, ends = segment_thoughts(pol, ids, caps)
    text = pol.decode(ids)
    return Sample(list(prompt_ids), ids, len(prefix_ids), text, thoughts, ends, fmt.extract_answer(text), finish,
                  cap_ends=caps)
