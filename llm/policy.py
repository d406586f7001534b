"""A Hugging Face causal LM as a thought-structured policy: model + tokenizer + ``ThoughtFormat``.

The public surface is small:

* :meth:`Policy.generate`: whole thought chains for many prompts in ONE batched decode loop with
  the KV cache (temperature, top-p, per-thought token cap, max thoughts, stop at the answer);
  each prompt is prefilled once and its cache fanned out to its ``n`` samples.
* :meth:`Policy.continue_from` / :meth:`Policy.continue_many`: ``k`` continuations of prompt + given
  prefix, the prefix prefilled once and its cache fanned out (never re-encoded ``k`` times).
* :meth:`Policy.complete`: free-form completions (localization / verification calls).
* :meth:`Policy.chat_prompt` / :meth:`Policy.uses_chat`: a prompt wrapped in the tokenizer's chat template
  (as token ids: every method above takes a prompt as text or as token ids).
* :meth:`Policy.logprobs` / :meth:`Policy.collate`: ``log pi(y_t | y_<t)`` of given tokens (with
  grad; ``llm.losses.token_logprobs`` of the model's logits) and right-padded training batches.
* :meth:`Policy.from_pretrained` / :meth:`Policy.save_pretrained` / :meth:`Policy.get_task`.

The decode engine lives in ``llm.decode``, thought tracking in ``llm.thoughts`` and model resolution
(``"tiny"``, local directories, cached hub names) in ``llm.models`` (``load_policy``). Shape letters:
``docs/architecture.md``.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from . import decode as _dec
from .decode import FINISH, Sample  # noqa: F401  (public: part of the policy's surface)
from .hub import FORMAT_FILE, is_path_like, read_meta, resolve_dtype, task_settings
from .losses import token_logprobs
from . import thoughts as _thoughts
from .thoughts import DEFAULT_FORMAT, ThoughtFormat

__all__ = ["Policy", "Sample", "FINISH", "FORMAT_FILE"]


class Policy:
    """A causal LM + tokenizer + thought format on one device."""

    kv_reuse = True
    """the sampling calls take ``keep_kv`` / ``kv_from`` (``llm.decode``, KV reuse)"""

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
        """Load a model directory or a hub name already in the local cache. The format is ``fmt`` if
        given, else the one saved in ``credit_resets.json`` beside the model, else ``DEFAULT_FORMAT``.
        ``dtype``: a torch dtype or a name (``llm.hub.resolve_dtype``; None keeps the saved one).
        The offline default ``"tiny"`` is resolved by ``llm.models.load_policy("tiny")``."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = str(name_or_dir)
        if path == "tiny":
            raise ValueError("name_or_dir: 'tiny' is a name, not a model; load it with "
                             "llm.models.load_policy('tiny') (or llm.models.resolve_model('tiny') for its path)")
        if is_path_like(path) and not Path(path).expanduser().is_dir():
            raise ValueError(f"name_or_dir: model directory {path!r} does not exist (or is not a directory)")
        dtype = resolve_dtype(dtype, str(device))
        kw = {} if dtype is None else {"dtype": dtype}
        try:
            tok = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, **kw)
        except (OSError, ValueError) as e:
            raise ValueError(f"name_or_dir: could not load a causal LM from {path!r} ({e})") from None
        meta = read_meta(path)
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
        task and difficulty the model was trained on (from ``credit_resets.json``, read by
        ``llm.hub.task_settings``), e.g. the tiny default's arithmetic. Options in the name
        (``"arith:terms=6"``, ``llm.tasks.parse_task_spec``) override those; keywords override both."""
        from .tasks import get_task, parse_task_spec

        if name_or_path is None:
            name_or_path = (self.meta.get("task") or {}).get("name")
            if name_or_path is None:
                raise ValueError("name_or_path: this model has no saved task; pass a task name")
        base, opts = parse_task_spec(str(name_or_path))  # "arith:terms=6": the saved arith settings, then terms=6
        return get_task(base, **{"fmt": self.fmt, **task_settings(self.meta, base), **opts, **kw})

    # ------------------------------------------------------------- tokenising
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens (for prefixes and responses)."""
        return self.tokenizer.encode(text, add_special_tokens=False)

    def encode_prompt(self, text: str | list[int]) -> list[int]:
        """Token ids of a prompt, with the tokenizer's usual special tokens (e.g. BOS); a list of token ids
        (e.g. from :meth:`chat_prompt`) is taken as it is."""
        if isinstance(text, (list, tuple)):
            if not text or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in text):
                raise ValueError("prompt: a token-id prompt must be a non-empty list of non-negative ints")
            return list(text)
        if not isinstance(text, str):
            raise TypeError(f"prompt: expected a str or a list of token ids, got {type(text).__name__}")
        ids = self.tokenizer.encode(text, add_special_tokens=True)
        if not ids:
            raise ValueError("prompt: encodes to no tokens; give a non-empty prompt")
        return ids

    def uses_chat(self, mode: str) -> bool:
        """Whether prompts are wrapped in the chat template: ``"on"`` (the tokenizer must have one),
        ``"off"``, or ``"auto"`` (when the tokenizer has one)."""
        has = bool(getattr(self.tokenizer, "chat_template", None))
        if mode == "auto":
            return has
        if mode == "on" and not has:
            raise ValueError("chat_template='on' but the tokenizer has no chat template; use 'auto' or 'off'")
        if mode not in ("on", "off"):
            raise ValueError(f"chat_template: expected 'auto', 'on' or 'off', got {mode!r}")
        return mode == "on"

    def chat_prompt(self, text: str) -> list[int]:
        """Token ids of ``text`` as one user turn in the tokenizer's chat template, followed by the
        assistant header (``add_generation_prompt=True``): the response starts right after them."""
        out = self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=True,
                                                 add_generation_prompt=True, return_dict=False)
        if hasattr(out, "keys"):  # a BatchEncoding on versions that ignore return_dict
            out = out["input_ids"]
        return [int(t) for t in out]

    def prompt_input(self, text: str, chat: str = "off") -> str | list[int]:
        """``text`` itself, or its chat-template token ids when :meth:`uses_chat` says so (the prompt
        argument of :meth:`generate` and the other sampling methods)."""
        return self.chat_prompt(text) if self.uses_chat(chat) else text

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

    def _check_ids(self, ids: list[int], what: str) -> list[int]:
        """``ids`` if every one is a row of the model's input embedding, else ValueError naming id and position."""
        vocab = self.model.get_input_embeddings().num_embeddings
        if ids and (min(ids) < 0 or max(ids) >= vocab):
            j = next(j for j, t in enumerate(ids) if not 0 <= t < vocab)
            raise ValueError(f"{what}: token id {ids[j]} at position {j} is outside the model's vocabulary "
                             f"(ids 0..{vocab - 1})")
        return ids

    def _check_len(self, n_tokens: int, what: str):
        if self.max_len is not None and n_tokens >= self.max_len:
            raise ValueError(f"{what}: {n_tokens} tokens leave no room in the model's context of "
                             f"{self.max_len} tokens; shorten it")

    # ------------------------------------------------------------- sampling
    def generate(self, prompts: list[str], *, n: int = 1, temperature=1.0, top_p=1.0, max_thoughts=20,
                 max_thought_tokens=256, max_new_tokens=None, greedy=False,
                 generator: torch.Generator | None = None, thought_cap: str = "keep",
                 budget_scope: str = "response", keep_kv: bool = False) -> list[list[Sample]]:
        """``n`` thought chains per prompt (one batched KV-cache decode loop); result[i][j] is sample j of
        prompt i. A chain stops at its answer, at ``max_thoughts`` thoughts, at the token budget
        (``max_new_tokens``, default ``max_thoughts * max_thought_tokens``, or the context end), or at EOS.
        A thought reaching ``max_thought_tokens`` without a delimiter is kept and generation goes on
        (``thought_cap="keep"``, the paper) or ends the chain (``"end"``). Budget stops are cut back to the
        last complete thought (``llm.decode``). ``keep_kv``: each sample carries its keys/values
        (``Sample.kv``, for ``kv_from`` of a later call)."""
        rows = self._encode_prompts(prompts)
        if not rows:
            return []
        return _dec.decode(self, rows, [[] for _ in rows], n, mode="chain", temperature=temperature,
                           top_p=top_p, max_thoughts=max_thoughts, max_thought_tokens=max_thought_tokens,
                           max_new_tokens=max_new_tokens, greedy=greedy, generator=generator,
                           thought_cap=thought_cap, budget_scope=budget_scope, keep_kv=keep_kv)

    def continue_from(self, prompt: str, prefix_ids: list[int], k: int, *, share_prefix: bool = True,
                      prefix_cap_ends: list[int] | None = None, **kw) -> list[Sample]:
        """``k`` continuations of ``prompt`` + ``prefix_ids`` (token ids of the kept thoughts, e.g.
        ``sample.response_ids[:sample.thought_ends[j - 1]]``). The prefix is prefilled once and its cache
        fanned out to ``k`` rows; ``share_prefix=False`` re-encodes it for each row instead (reference
        path for tests and benchmarks; same tokens for the same generator seed). Other keywords as in
        :meth:`generate`; ``max_thoughts`` counts the whole chain (prefix thoughts included), the
        token budget counts prefix + sampled tokens (``budget_scope="sampled"``: sampled tokens only).
        ``prefix_cap_ends``: the cap-ended thought ends inside the prefix (``Sample.cap_ends`` up to the
        cut), so that those thoughts count. ``prefix_len`` of each sample is ``len(prefix_ids)``."""
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k: expected a positive int, got {k!r}")
        p = self.encode_prompt(prompt)
        prefix_ids = self._check_ids([int(t) for t in prefix_ids], "prefix_ids")
        self._check_len(len(p) + len(prefix_ids), "prompt + prefix")
        params = _dec.chain_params(kw)
        caps = list(prefix_cap_ends or [])
        if share_prefix:
            return _dec.decode(self, [p], [prefix_ids], k, mode="chain", prefix_cap_ends=[caps], **params)[0]
        return [g[0] for g in _dec.decode(self, [p] * k, [prefix_ids] * k, 1, mode="chain",
                                          prefix_cap_ends=[caps] * k, **params)]

    def continue_many(self, prompts: list[str], prefixes: list[list[int]], k: int = 1, *,
                      prefix_cap_ends: list[list[int]] | None = None, kv_from: list | None = None,
                      **kw) -> list[list[Sample]]:
        """``k`` continuations of each ``(prompts[i], prefixes[i])`` in ONE batched decode loop:
        result[i][j] is continuation j of pair i. Each prompt + prefix is prefilled once and its cache
        fanned out to its ``k`` rows (as :meth:`continue_from`, which is this for one pair). Keywords as
        in :meth:`continue_from` (``prefix_cap_ends``: one list per pair). ``kv_from[i]``: the saved
        keys/values of an earlier sample (``Sample.kv``, e.g. the parent chain's), reused for their common
        token prefix with prompt + prefix ``i`` (``llm.decode.prefill_reusing``)."""
        if isinstance(prompts, str):
            raise TypeError("prompts: expected a list of str, got a str; wrap it in a list")
        if prefix_cap_ends is not None and len(prefix_cap_ends) != len(prefixes):
            raise ValueError(f"prefix_cap_ends: expected one list per prefix ({len(prefixes)}), "
                             f"got {len(prefix_cap_ends)}")
        if len(prompts) != len(prefixes):
            raise ValueError(f"prompts/prefixes: expected equal lengths, got {len(prompts)} and {len(prefixes)}")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k: expected a positive int, got {k!r}")
        if not prompts:
            return []
        rows = [self.encode_prompt(p) for p in prompts]
        pre = [self._check_ids([int(t) for t in q], f"prefixes[{j}]") for j, q in enumerate(prefixes)]
        for j, (p, q) in enumerate(zip(rows, pre)):
            self._check_len(len(p) + len(q), f"prompt + prefix {j}")
        return _dec.decode(self, rows, pre, k, mode="chain", prefix_cap_ends=prefix_cap_ends, kv_from=kv_from,
                           **_dec.chain_params(kw))

    def complete(self, prompts: list[str], *, temperature=0.3, max_new_tokens=64, greedy=False,
                 generator=None, top_p: float = 1.0, stop_at_answer: bool = True,
                 kv_from: list | None = None) -> list[str]:
        """Free-form completions (localization / verification calls): stop at EOS, at the first complete
        answer marker (unless ``stop_at_answer=False``: then only EOS or the budget), or after
        ``max_new_tokens``; thought delimiters do not stop them. ``kv_from`` as in :meth:`continue_many`
        (a compact localization prompt starts with the parent chain's own tokens)."""
        rows = self._encode_prompts(prompts)
        if not rows:
            return []
        out = _dec.decode(self, rows, [[] for _ in rows], 1, mode="free", temperature=temperature, top_p=top_p,
                          max_thoughts=1, max_thought_tokens=max_new_tokens, max_new_tokens=max_new_tokens,
                          greedy=greedy, generator=generator, stop_at_answer=stop_at_answer, kv_from=kv_from)
        return [s[0].text for s in out]

    def thought_ends(self, ids: list[int], *, exact: bool = False) -> list[int]:
        """Token offset where each thought of ``decode(ids)`` ends (``llm.thoughts.thought_ends`` from the
        token pieces; ``exact=True``: the decode-based binary search, right for any tokenizer)."""
        if exact:
            return _thoughts.thought_ends_exact(self.decode, list(ids), self.fmt)
        return _thoughts.thought_ends(self.pieces, list(ids), self.fmt)

    def _encode_prompts(self, prompts) -> list[list[int]]:
        """Token ids of each prompt, checked against the context length."""
        if isinstance(prompts, str):
            raise TypeError("prompts: expected a list of str, got a str; wrap it in a list")
        rows = [self.encode_prompt(p) for p in prompts]
        for p in rows:
            self._check_len(len(p), "prompt")
        return rows

    # ------------------------------------------------------------- training
    def logprobs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``logp[b, t] = log pi(input_ids[b, t+1] | input_ids[b, :t+1])``, shape (B, T-1), float32, with
        grad (``llm.losses.token_logprobs`` of the model's logits). Right padding (as from :meth:`collate`);
        values at padding are meaningless, mask them. An empty batch (B or T = 0) raises ValueError."""
        if input_ids.dim() != 2 or input_ids.shape != attention_mask.shape:
            raise ValueError(f"input_ids/attention_mask: expected equal (B, T) shapes, got "
                             f"{tuple(input_ids.shape)} and {tuple(attention_mask.shape)}")
        if input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
            raise ValueError(f"input_ids: empty batch of shape {tuple(input_ids.shape)}; logprobs needs at least one "
                             f"sequence of at least one token")
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits  # (B,T,V)
        return token_logprobs(logits, input_ids)[0]                                                   # (B,T-1)

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
