"""A Hugging Face causal LM as a thought-structured policy.

* :meth:`Policy.generate`: whole thought chains for many prompts in ONE batched decode loop with
  the KV cache (temperature, top-p, per-thought token cap, max thoughts, stop at the answer);
  each prompt is prefilled once and its cache fanned out to its ``n`` samples.
* :meth:`Policy.continue_from`: prefill prompt + a given prefix once, fan the cache out to ``k``
  continuations (``DynamicCache.batch_repeat_interleave``), never re-encoding the prefix ``k`` times;
  :meth:`Policy.continue_many` does the same for many (prompt, prefix) pairs in one decode loop.
* :meth:`Policy.logprobs` / :meth:`Policy.collate`: ``log pi(y_t | y_<t)`` of given tokens, with grad,
  and right-padded batches with a mask on the trainable response suffix.

Shape letters: B batch rows, T sequence length, V vocabulary, L prompt length (left padded).
Sampling is reproducible on CPU given a ``torch.Generator``: rows finish and leave the batch in a
deterministic order, and each step draws one ``torch.multinomial`` over the live rows.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .thoughts import DEFAULT_FORMAT, ThoughtFormat

FORMAT_FILE = "credit_resets.json"
"""Small json beside a saved model holding its ThoughtFormat (``"fmt"``) and task settings (``"task"``)."""

FINISH = ("answer", "max_thoughts", "budget", "eos")


@dataclass
class Sample:
    """One sampled response (see the module docstring)."""

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
    """One of FINISH: "answer" | "max_thoughts" | "budget" (cut back to the last complete thought) | "eos"."""
    sampled_tokens: int = 0
    """Tokens actually sampled for this row (before a budget cut-back; EOS included): the decode work done."""


def _resolve_dtype(dtype):
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise ValueError(f"dtype: expected a torch.dtype, 'auto' or one of {sorted(table)}, got {dtype!r}")
    return table[dtype]


class Policy:
    """A causal LM + tokenizer + thought format on one device."""

    def __init__(self, model, tokenizer, fmt: ThoughtFormat = DEFAULT_FORMAT, device="cpu"):
        if not isinstance(fmt, ThoughtFormat):
            raise TypeError(f"fmt: expected a ThoughtFormat, got {type(fmt).__name__}")
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.tokenizer = tokenizer
        self.fmt = fmt
        if tokenizer.pad_token_id is None:
            if tokenizer.eos_token_id is None:
                raise ValueError("tokenizer: needs a pad or an eos token")
            tokenizer.pad_token = tokenizer.eos_token
        self.pad_id = tokenizer.pad_token_id
        eos = getattr(model.generation_config, "eos_token_id", None) if hasattr(model, "generation_config") else None
        eos = eos if eos is not None else tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
        self.max_len = getattr(model.config, "max_position_embeddings", None)
        self.meta: dict = {}
        """Extra settings saved beside the model (e.g. the task the tiny default was trained on)."""
        self._pieces = None

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, name_or_dir, *, device="cpu", dtype=None, fmt: ThoughtFormat | None = None) -> "Policy":
        """Load a model directory or hub name (``"tiny"`` builds/loads the offline default). The format
        is ``fmt`` if given, else the one saved in ``credit_resets.json`` beside the model, else
        ``DEFAULT_FORMAT``."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from .tiny import resolve_model

        path = resolve_model(str(name_or_dir))
        dtype = _resolve_dtype(dtype)
        kw = {} if dtype is None else {"dtype": dtype}
        try:
            tok = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, **kw)
        except (OSError, ValueError) as e:
            raise ValueError(f"name_or_dir: could not load a causal LM from {str(name_or_dir)!r} ({e})") from None
        meta = {}
        mfile = Path(path) / FORMAT_FILE
        if mfile.is_file():
            meta = json.loads(mfile.read_text())
        if fmt is None:
            fmt = ThoughtFormat(**meta["fmt"]) if "fmt" in meta else DEFAULT_FORMAT
        pol = cls(model, tok, fmt, device=device)
        pol.meta = meta
        return pol

    def save_pretrained(self, path, **meta) -> Path:
        """Save model + tokenizer + ``credit_resets.json`` (format and ``meta``) into ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        (path / FORMAT_FILE).write_text(json.dumps({**self.meta, **meta, "fmt": self.fmt.to_dict()}, indent=1))
        return path

    def get_task(self, name_or_path: str | None = None, **kw):
        """``llm.tasks.get_task`` with this policy's format; ``None`` (or the saved task's name) gives the
        task and difficulty the model was trained on (from ``credit_resets.json``), e.g. the tiny default's
        arithmetic. Keywords override."""
        from .tasks import get_task

        saved = dict(self.meta.get("task", {}))
        saved_name = saved.pop("name", None)
        if name_or_path is None:
            if saved_name is None:
                raise ValueError("name_or_path: this model has no saved task; pass a task name")
            name_or_path = saved_name
        if name_or_path != saved_name:
            saved = {}
        return get_task(name_or_path, **{"fmt": self.fmt, **saved, **kw})

    # ------------------------------------------------------------- tokenising
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens (for prefixes and responses)."""
        return self.tokenizer.encode(text, add_special_tokens=False)

    def encode_prompt(self, text: str) -> list[int]:
        """Token ids of a prompt, with the tokenizer's usual special tokens (e.g. BOS)."""
        if not isinstance(text, str):
            raise TypeError(f"prompt: expected a str, got {type(text).__name__}")
        ids = self.tokenizer.encode(text, add_special_tokens=True)
        if not ids:
            raise ValueError("prompt: encodes to no tokens; give a non-empty prompt")
        return ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    @property
    def pieces(self) -> list[str]:
        """Decoded text of every single token (built once; used to watch for markers while decoding)."""
        if self._pieces is None:
            n = max(len(self.tokenizer), self.model.config.vocab_size)
            self._pieces = [self.tokenizer.decode([i], skip_special_tokens=True) if i < len(self.tokenizer) else ""
                            for i in range(n)]
        return self._pieces

    def _check_len(self, n_tokens: int, what: str):
        if self.max_len is not None and n_tokens >= self.max_len:
            raise ValueError(f"{what}: {n_tokens} tokens leave no room in the model's context of "
                             f"{self.max_len} tokens; shorten it")

    # ------------------------------------------------------------- sampling
    def generate(self, prompts: list[str], *, n: int = 1, temperature=1.0, top_p=1.0, max_thoughts=20,
                 max_thought_tokens=256, max_new_tokens=None, greedy=False,
                 generator: torch.Generator | None = None) -> list[list[Sample]]:
        """``n`` thought chains per prompt (one batched KV-cache decode loop); result[i][j] is sample j of
        prompt i. A chain stops at its answer, at ``max_thoughts`` complete thoughts, at the token budget
        (``max_new_tokens``, default ``max_thoughts * max_thought_tokens``; also a thought longer than
        ``max_thought_tokens`` or the context end), or at EOS. Budget stops are cut back to the last
        complete thought."""
        rows = self._encode_prompts(prompts)
        if not rows:
            return []
        return self._run(rows, [[] for _ in rows], n, mode="chain", temperature=temperature,
                         top_p=top_p, max_thoughts=max_thoughts, max_thought_tokens=max_thought_tokens,
                         max_new_tokens=max_new_tokens, greedy=greedy, generator=generator)

    def continue_from(self, prompt: str, prefix_ids: list[int], k: int, *, share_prefix: bool = True,
                      **kw) -> list[Sample]:
        """``k`` continuations of ``prompt`` + ``prefix_ids`` (token ids of the kept thoughts, e.g.
        ``sample.response_ids[:sample.thought_ends[j - 1]]``). The prefix is prefilled once and its cache
        fanned out to ``k`` rows; ``share_prefix=False`` re-encodes it for each row instead (reference
        path for tests and benchmarks; same tokens for the same generator seed). Other keywords as in
        :meth:`generate`; ``max_thoughts`` counts the whole chain (prefix thoughts included), the
        token budget counts sampled tokens only. ``prefix_len`` of each sample is ``len(prefix_ids)``."""
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k: expected a positive int, got {k!r}")
        p = self.encode_prompt(prompt)
        prefix_ids = [int(t) for t in prefix_ids]
        self._check_len(len(p) + len(prefix_ids), "prompt + prefix")
        if share_prefix:
            return self._run([p], [prefix_ids], k, mode="chain", **self._chain_kw(kw))[0]
        return [g[0] for g in self._run([p] * k, [prefix_ids] * k, 1, mode="chain", **self._chain_kw(kw))]

    def continue_many(self, prompts: list[str], prefixes: list[list[int]], k: int = 1, **kw) -> list[list[Sample]]:
        """``k`` continuations of each ``(prompts[i], prefixes[i])`` in ONE batched decode loop:
        result[i][j] is continuation j of pair i. Each prompt + prefix is prefilled once and its cache
        fanned out to its ``k`` rows (as :meth:`continue_from`, which is this for one pair). Keywords as
        in :meth:`continue_from`."""
        if isinstance(prompts, str):
            raise TypeError("prompts: expected a list of str, got a str; wrap it in a list")
        if len(prompts) != len(prefixes):
            raise ValueError(f"prompts/prefixes: expected equal lengths, got {len(prompts)} and {len(prefixes)}")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k: expected a positive int, got {k!r}")
        if not prompts:
            return []
        rows = [self.encode_prompt(p) for p in prompts]
        pre = [[int(t) for t in q] for q in prefixes]
        for j, (p, q) in enumerate(zip(rows, pre)):
            self._check_len(len(p) + len(q), f"prompt + prefix {j}")
        return self._run(rows, pre, k, mode="chain", **self._chain_kw(kw))

    @staticmethod
    def _chain_kw(kw):
        allowed = {"temperature", "top_p", "max_thoughts", "max_thought_tokens", "max_new_tokens", "greedy",
                   "generator"}
        bad = set(kw) - allowed
        if bad:
            raise TypeError(f"unexpected keyword(s) {sorted(bad)}; expected some of {sorted(allowed)}")
        out = dict(temperature=1.0, top_p=1.0, max_thoughts=20, max_thought_tokens=256, max_new_tokens=None,
                   greedy=False, generator=None)
        out.update(kw)
        return out

    def complete(self, prompts: list[str], *, temperature=0.3, max_new_tokens=64, greedy=False,
                 generator=None) -> list[str]:
        """Free-form completions (localization / verification calls): stop at EOS, at the first complete
        answer marker, or after ``max_new_tokens``; thought delimiters do not stop them."""
        rows = self._encode_prompts(prompts)
        if not rows:
            return []
        out = self._run(rows, [[] for _ in rows], 1, mode="free", temperature=temperature, top_p=1.0,
                        max_thoughts=1, max_thought_tokens=max_new_tokens, max_new_tokens=max_new_tokens,
                        greedy=greedy, generator=generator)
        return [s[0].text for s in out]

    def _encode_prompts(self, prompts) -> list[list[int]]:
        """Token ids of each prompt, checked against the context length."""
        if isinstance(prompts, str):
            raise TypeError("prompts: expected a list of str, got a str; wrap it in a list")
        rows = [self.encode_prompt(p) for p in prompts]
        for p in rows:
            self._check_len(len(p), "prompt")
        return rows

    # ------------------------------------------------------------ decode loop
    def _sample_next(self, logits, temperature, top_p, greedy, generator):
        """Next token per row from ``logits  # (B, V)``."""
        if greedy or temperature == 0:
            return logits.argmax(-1)
        probs = torch.softmax(logits.float() / temperature, dim=-1)  # (B, V)
        if top_p < 1.0:
            sp, si = probs.sort(dim=-1, descending=True)
            drop = sp.cumsum(-1) - sp > top_p  # keep the smallest head whose mass reaches top_p
            sp = sp.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter_(-1, si, sp)
        if generator is not None and generator.device != probs.device:
            return torch.multinomial(probs.to(generator.device), 1, generator=generator).squeeze(-1).to(probs.device)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

    def _prefill(self, seqs: list[list[int]]):
        """Left-padded forward of ``seqs``; returns (last logits (B, V), cache, mask (B, L), next pos (B,))."""
        from transformers import DynamicCache

        L = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), L), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), L), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, L - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, L - len(s):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, L)
        try:
            cache = DynamicCache(config=self.model.config)  # filled in place by the forward passes
        except TypeError:  # older transformers
            cache = DynamicCache()
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1,
                         **{self._cache_kw: cache})
        return out.logits[:, -1, :], cache, mask, pos[:, -1] + 1

    @property
    def _cache_kw(self) -> str:
        """Name of the forward's cache argument: ``cache`` (transformers >= 5.2x) or ``past_key_values``."""
        import inspect

        if not hasattr(self, "_cache_kw_name"):
            params = inspect.signature(self.model.forward).parameters
            self._cache_kw_name = "cache" if "cache" in params else "past_key_values"
        return self._cache_kw_name

    @torch.inference_mode()
    def _run(self, prompts, prefixes, n, *, mode, temperature, top_p, max_thoughts, max_thought_tokens,
             max_new_tokens, greedy, generator):
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
        was_training = self.model.training
        self.model.eval()
        try:
            return self._decode(prompts, prefixes, n, mode, temperature, top_p, max_thoughts,
                                max_thought_tokens, max_new_tokens, greedy, generator)
        finally:
            self.model.train(was_training)

    def _decode(self, prompts, prefixes, n, mode, temperature, top_p, max_thoughts, max_thought_tokens,
                max_new_tokens, greedy, generator):
        fmt, pieces = self.fmt, self.pieces
        logits, cache, mask, pos = self._prefill([p + q for p, q in zip(prompts, prefixes)])
        if n > 1:  # fan each prompt's cache out to its n samples: never re-encode the prompt / prefix
            cache.batch_repeat_interleave(n)
            logits, mask, pos = (x.repeat_interleave(n, dim=0) for x in (logits, mask, pos))
        B = len(prompts) * n
        owner = [i // n for i in range(B)]                  # row -> prompt
        gen = [[] for _ in range(B)]                        # sampled ids per row
        pre_text = [self.decode(q) for q in prefixes]
        cur = [pre_text[o].split(fmt.delimiter)[-1] for o in owner]  # text of the current thought
        cur_tok = [0] * B                                   # tokens in the current thought
        n_th = [pre_text[o].count(fmt.delimiter) if mode == "chain" else 0 for o in owner]
        finish = [None] * B
        live = list(range(B))                               # original row of each live batch row
        ctx_left = [(self.max_len or 10 ** 12) - len(prompts[o]) - len(prefixes[o]) for o in owner]
        dl = len(fmt.delimiter)
        # no padding anywhere (one prompt, or equal lengths): a one-token step attends to the whole cache,
        # so the mask can be left out, which skips building a 4-D mask in every step
        no_pad = bool(mask.all())
        while live:
            tok = self._sample_next(logits, temperature, top_p, greedy, generator).tolist()  # (B_live,)
            keep = []
            for j, r in enumerate(live):
                t = tok[j]
                if t in self.eos_ids:
                    finish[r] = "eos"
                    continue
                gen[r].append(t)
                piece = pieces[t]
                cur[r] += piece
                cur_tok[r] += 1
                if fmt.answer_close in piece and fmt.extract_answer(cur[r]) is not None:
                    finish[r] = "answer"
                    continue
                if mode == "chain":
                    at = cur[r].find(fmt.delimiter, max(0, len(cur[r]) - len(piece) - dl + 1))
                    if at >= 0:
                        n_th[r] += 1
                        cur[r], cur_tok[r] = cur[r][at + dl:], 0
                        if n_th[r] >= max_thoughts:
                            finish[r] = "max_thoughts"
                            continue
                if cur_tok[r] >= max_thought_tokens or len(gen[r]) >= max_new_tokens or len(gen[r]) >= ctx_left[r]:
                    finish[r] = "budget"
                    continue
                keep.append(j)
            if not keep:
                break
            if len(keep) < len(live):
                idx = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(idx)
                pos = pos[idx]
                if not no_pad:
                    mask = mask[idx]
                tok = [tok[j] for j in keep]
                live = [live[j] for j in keep]
            if not no_pad:
                mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=1)  # (B_live, L + t)
            step_ids = torch.tensor(tok, device=self.device).unsqueeze(1)    # (B_live, 1)
            out = self.model(input_ids=step_ids, attention_mask=None if no_pad else mask,
                             position_ids=pos.unsqueeze(1), use_cache=True, **{self._cache_kw: cache})
            logits, pos = out.logits[:, -1, :], pos + 1
        samples = [self._make_sample(prompts[owner[r]], prefixes[owner[r]], gen[r], finish[r] or "budget", mode)
                   for r in range(B)]
        for r, s in enumerate(samples):
            s.sampled_tokens = len(gen[r]) + (finish[r] == "eos")
        return [samples[i * n:(i + 1) * n] for i in range(len(prompts))]

    def _thought_ends(self, ids: list[int]) -> list[int]:
        """Token offset where each thought of ``decode(ids)`` ends: the smallest ``t`` with
        ``decode(ids[:t])`` holding ``j`` delimiters (binary search), plus ``len(ids)`` for a
        trailing answer thought."""
        fmt = self.fmt
        text = self.decode(ids)
        ends, lo = [], 0
        for j in range(1, text.count(fmt.delimiter) + 1):
            a, b = lo + 1, len(ids)
            while a < b:
                m = (a + b) // 2
                if self.decode(ids[:m]).count(fmt.delimiter) >= j:
                    b = m
                else:
                    a = m + 1
            ends.append(a)
            lo = a
        if fmt.extract_answer(text.split(fmt.delimiter)[-1]) is not None:
            ends.append(len(ids))
        return ends

    def _scan_ends(self, ids: list[int]) -> list[int]:
        """Fast O(T) version of :meth:`_thought_ends` from the single-token texts (exact for tokenizers
        whose pieces concatenate to the decoded text; checked against ``split`` by the caller)."""
        fmt, pieces, dl = self.fmt, self.pieces, len(self.fmt.delimiter)
        cur, ends = "", []
        for t, tok in enumerate(ids, 1):
            piece = pieces[tok]
            cur += piece
            at = cur.find(fmt.delimiter, max(0, len(cur) - len(piece) - dl + 1))
            if at >= 0:
                ends.append(t)
                cur = cur[at + dl:]
        if fmt.extract_answer(cur) is not None:
            ends.append(len(ids))
        return ends

    def _make_sample(self, prompt_ids, prefix_ids, gen, finish, mode) -> Sample:
        ids = list(prefix_ids) + gen
        if mode == "free":
            text = self.decode(ids)
            return Sample(list(prompt_ids), ids, len(prefix_ids), text, [], [], self.fmt.extract_answer(text), finish)
        ends = self._scan_ends(ids)
        if finish == "budget":  # cut back to the last complete thought (never into the given prefix)
            cut = max([len(prefix_ids)] + [e for e in ends if e <= len(ids)])
            ids, ends = ids[:cut], [e for e in ends if e <= cut]
        text = self.decode(ids)
        thoughts = self.fmt.split(text)
        if len(thoughts) != len(ends):  # pieces do not concatenate to the text: exact (slower) search
            ends = self._thought_ends(ids)
        return Sample(list(prompt_ids), ids, len(prefix_ids), text, thoughts, ends,
                      self.fmt.extract_answer(text), finish)

    # ------------------------------------------------------------- training
    def logprobs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``logp[b, t] = log pi(input_ids[b, t+1] | input_ids[b, :t+1])``, shape (B, T-1), float32, with
        grad. Right padding (as from :meth:`collate`); values at padding are meaningless, mask them."""
        if input_ids.dim() != 2 or input_ids.shape != attention_mask.shape:
            raise ValueError(f"input_ids/attention_mask: expected equal (B, T) shapes, got "
                             f"{tuple(input_ids.shape)} and {tuple(attention_mask.shape)}")
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits  # (B,T,V)
        logits = logits[:, :-1, :].float()                                                            # (B,T-1,V)
        tgt = input_ids[:, 1:].unsqueeze(-1)                                                          # (B,T-1,1)
        return logits.gather(-1, tgt).squeeze(-1) - torch.logsumexp(logits, dim=-1)                   # (B,T-1)

    def collate(self, samples: list[Sample]) -> dict:
        """Right-padded batch: ``input_ids``, ``attention_mask`` (B, T) long and ``response_mask`` (B, T)
        float, 1.0 exactly on response tokens at offsets ``>= prefix_len`` (the trainable suffix); 0 on
        the prompt, the given prefix and padding. Positions align with ``input_ids`` (use
        ``response_mask[:, 1:]`` with :meth:`logprobs`)."""
        if not samples:
            raise ValueError("samples: expected at least one Sample, got []")
        seqs = [s.prompt_ids + s.response_ids for s in samples]
        T = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), T), self.pad_id, dtype=torch.long)
        att = torch.zeros((len(seqs), T), dtype=torch.long)
        rmask = torch.zeros((len(seqs), T), dtype=torch.float32)
        for i, (s, seq) in enumerate(zip(samples, seqs)):
            ids[i, :len(seq)] = torch.tensor(seq, dtype=torch.long)
            att[i, :len(seq)] = 1
            rmask[i, len(s.prompt_ids) + s.prefix_len:len(seq)] = 1.0
        return {"input_ids": ids.to(self.device), "attention_mask": att.to(self.device),
                "response_mask": rmask.to(self.device)}
