"""The workload of ``realistic.py``: a random-initialised Llama with a ~32k BPE vocabulary, prompts of a
fixed token length, and a *script* that gives the random model the structure of a reasoning chain.

A random model never writes a thought delimiter or an answer, so without help every chain would run
to its budget, be cut back to nothing, and every reset would start from an empty prefix. The script
is a logit bias applied inside the model's forward whenever gradients are off (sampling: ours,
``model.generate``, TRL's generation), never in a training forward:

* chain mode (a prompt, or prompt + reset prefix): response token ``t`` (at position ``prompt length
  + t``) is free text (a random choice among letter-only tokens) except at the scripted slots:
  thought ``j`` ends with the delimiter tokens at ``t = (j + 1) * thought_tokens - 1``; the last
  thought ends with ``answer_open`` + a digit (sampled among the 10 digit tokens) + ``answer_close``.
  Every chain therefore has ``thoughts`` thoughts of ``thought_tokens`` tokens, the last holding the
  answer, and a continuation from a prefix of ``k - 1`` thoughts follows the same slots.
* localization mode (the prefill is longer than any chain context): the reply is a fixed sequence of
  ``loc_reply_tokens`` letter tokens and then ``box(thoughts)``, so SRPO resets at the last thought:
  the reset prefix is ``thoughts - 1`` thoughts and the continuation re-writes the last one.

Rewards: the answer digit is sampled uniformly, the problem's answer is a digit, so about 10% of the
chains are correct and groups have reward variance.
"""
from __future__ import annotations

import inspect
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from llm.policy import Policy
from llm.tasks import Problem, Task
from llm.thoughts import DEFAULT_FORMAT


@dataclass(frozen=True)
class Size:
    """Model and workload shape of one benchmark size."""
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    prompt_tokens: int
    thoughts: int
    thought_tokens: int
    loc_reply_tokens: int
    prompts: int
    """prompts per step (x 8 samples)"""

    @property
    def response_tokens(self) -> int:
        return self.thoughts * self.thought_tokens


SIZES = {
    # seconds, for the test suite
    "quick": Size(vocab=1000, hidden=32, layers=2, heads=2, kv_heads=2, intermediate=64, prompt_tokens=16,
                  thoughts=3, thought_tokens=8, loc_reply_tokens=4, prompts=1),
    # the CPU shape of the issue: ~26M parameters, 32k vocabulary, 256-token prompts, 8 x 256-token responses
    "cpu": Size(vocab=32000, hidden=384, layers=8, heads=6, kv_heads=6, intermediate=1024, prompt_tokens=256,
                thoughts=4, thought_tokens=64, loc_reply_tokens=64, prompts=2),
    # GPU shapes (same script): ~0.2B and ~1.1B parameters (Llama-3.2-1B-like widths), more prompts
    "gpu": Size(vocab=32000, hidden=1024, layers=16, heads=16, kv_heads=8, intermediate=2816, prompt_tokens=256,
                thoughts=4, thought_tokens=64, loc_reply_tokens=64, prompts=16),
    "gpu-1b": Size(vocab=32000, hidden=2048, layers=16, heads=32, kv_heads=8, intermediate=5632, prompt_tokens=256,
                   thoughts=8, thought_tokens=128, loc_reply_tokens=128, prompts=16),
}


# ----------------------------------------------------------------------------- tokenizer
def _corpus(n_lines: int, n_words: int, seed: int) -> list[str]:
    """Zipf-distributed pseudo-words (consonant-vowel syllables) with the format's markers in every line."""
    rng = np.random.default_rng(seed)
    C, W = np.array(list("bcdfghjklmnprstvwz")), np.array(list("aeiou"))
    n_syl = rng.integers(1, 5, size=4 * n_words)
    lex: set[str] = set()
    for k in n_syl:
        if len(lex) >= n_words:
            break
        c, w, tail = rng.choice(C, k), rng.choice(W, k), rng.random(k) < 0.4
        tails = np.where(tail, rng.choice(C, k), "")
        lex.add("".join(a + b + t for a, b, t in zip(c, w, tails)))
    words = np.array(sorted(lex))
    rng.shuffle(words)
    p = 1.0 / np.arange(1, len(words) + 1)
    idx = rng.choice(len(words), size=(n_lines, 80), p=p / p.sum())
    fmt = DEFAULT_FORMAT
    return [" ".join(words[r[:60]]) + fmt.delimiter + " ".join(words[r[60:]]) + " " + fmt.box(str(d))
            for r, d in zip(idx, rng.integers(0, 10, n_lines))]


def build_tokenizer(vocab: int, seed: int = 0, cache_dir: str | Path | None = None):
    """Byte-level BPE with ``vocab`` tokens trained with ``tokenizers`` on generated text (about 20 s for
    32k; cached as json under ``$CREDIT_RESETS_CACHE/bench``), wrapped as a ``PreTrainedTokenizerFast``
    with ``<pad>`` (id 0) and ``<eos>`` (id 1)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    root = Path(cache_dir or os.environ.get("CREDIT_RESETS_CACHE") or Path.home() / ".cache" / "credit_resets")
    path = root / "bench" / f"bpe_{vocab}_seed{seed}.json"
    if path.is_file():
        tok = Tokenizer.from_file(str(path))
    else:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tr = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<pad>", "<eos>"], show_progress=False,
                                 initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        n_lines = 20_000 if vocab > 4000 else 2_000
        tok.train_from_iterator(_corpus(n_lines, min(60_000, 2 * vocab), seed), tr)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tok.save(str(tmp))
        tmp.replace(path)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")


# ----------------------------------------------------------------------------- the script
class Script:
    """Which tokens may follow at each response offset (chain mode) or after each token (localization
    mode); see the module docstring. ``bias(...)`` adds 0 / -inf-like values to logits."""

    NEG = -1e4

    def __init__(self, tok, size: Size, fmt=DEFAULT_FORMAT):
        V = len(tok)
        pieces = [tok.decode([i]) for i in range(V)]
        self.neutral = [i for i, p in enumerate(pieces) if p.strip() and all(c.isalpha() and c.isascii() or c == " "
                                                                           for c in p)]
        self.digits = [tok.convert_tokens_to_ids(str(d)) for d in range(10)]
        enc = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731
        self.delim, self.open, self.close = enc(fmt.delimiter), enc(" " + fmt.answer_open), enc(fmt.answer_close)
        if any(d is None or d == tok.unk_token_id or pieces[d] != str(k) for k, d in enumerate(self.digits)):
            raise ValueError("tokenizer: every digit must be one token")
        self.P, self.R, self.T = size.prompt_tokens, size.response_tokens, size.thought_tokens
        self.eos = tok.eos_token_id
        # rows of the bias table: 0 no bias, 1 letters only, 2 digits only, 3 + v: force token v
        forced = sorted(set(self.delim + self.open + self.close + [self.eos]))
        self.force_row = {v: 3 + j for j, v in enumerate(forced)}
        table = torch.full((3 + len(forced), V), self.NEG)
        table[0] = 0.0
        table[1, self.neutral] = 0.0
        table[2, self.digits] = 0.0
        for v, r in self.force_row.items():
            table[r, v] = 0.0
        self.table = table
        self.row_of_offset = self._chain_rows(size)          # (R + 1,): row per response offset, R = past the end
        # localization reply: fixed letter tokens, then box(thoughts); next token as a function of the last one
        words = [i for i in self.neutral if pieces[i].startswith(" ")][:size.loc_reply_tokens]
        reply = words + self.open + [self.digits[size.thoughts]] + self.close + [self.eos]
        if len(set(reply[:-1])) != len(reply) - 1:
            raise ValueError("localization reply: its tokens must be distinct")
        nxt = torch.full((V,), reply[0], dtype=torch.long)    # any prompt end -> first reply token
        for a, b in zip(reply[:-1], reply[1:]):
            nxt[a] = b
        self.loc_next = nxt
        self.mode = "chain"

    def _chain_rows(self, size: Size) -> torch.Tensor:
        rows = torch.ones(self.R + 1, dtype=torch.long)
        for j in range(size.thoughts - 1):
            end = (j + 1) * self.T
            for k, v in enumerate(self.delim):
                rows[end - len(self.delim) + k] = self.force_row[v]
        tail = self.open + [None] + self.close          # None: the sampled digit
        for k, v in enumerate(tail):
            rows[self.R - len(tail) + k] = 2 if v is None else self.force_row[v]
        rows[self.R] = self.force_row[self.eos]
        return rows

    def bias(self, logits, input_ids, pos) -> torch.Tensor:
        """``logits  # (B, L, V)`` for the last L positions of ``pos  # (B, T)`` and ``input_ids  # (B, T)``."""
        L, dev = logits.shape[1], logits.device
        if input_ids.shape[1] > 1:  # a prefill decides the mode: localization prompts are longer than chains
            self.mode = "loc" if int(pos.max()) >= self.P + self.R else "chain"
        if self.table.device != dev:
            self.table, self.row_of_offset, self.loc_next = (x.to(dev) for x in (self.table, self.row_of_offset,
                                                                                 self.loc_next))
        if self.mode == "loc":
            nxt = self.loc_next[input_ids[:, -L:]]                                    # (B, L)
            b = torch.full_like(logits, self.NEG)
            return logits + b.scatter(-1, nxt.unsqueeze(-1), 0.0)
        off = pos[:, -L:] + 1 - self.P       # (B, L): response offset of the token these logits predict
        rows = torch.where(off < 0, torch.zeros_like(off), self.row_of_offset[off.clamp(0, self.R)])
        return logits + self.table[rows].to(logits.dtype)


def scripted_llama_class():
    """A ``LlamaForCausalLM`` subclass whose forward adds ``self.script.bias`` when gradients are off."""
    from transformers import LlamaForCausalLM

    class ScriptedLlama(LlamaForCausalLM):
        script: Script | None = None

        def forward(self, *args, **kw):
            out = super().forward(*args, **kw)
            if self.script is None or torch.is_grad_enabled() or out.logits is None:
                return out
            ids = kw.get("input_ids", args[0] if args else None)
            out.logits = self.script.bias(out.logits, ids, _positions(ids, kw))
            return out

    # keep the parent's signature visible (Policy looks for the cache keyword in it)
    ScriptedLlama.forward.__signature__ = inspect.signature(LlamaForCausalLM.forward)
    return ScriptedLlama


def _positions(ids, kw) -> torch.Tensor:
    """Absolute positions (B, T) of the input tokens: given, else from the padding mask, else after the cache."""
    if kw.get("position_ids") is not None:
        return kw["position_ids"]
    mask = kw.get("attention_mask")
    T = ids.shape[1]
    if mask is not None and mask.dim() == 2:
        return (mask.long().cumsum(-1) - 1).clamp(min=0)[:, -T:]
    cache = kw.get("cache", kw.get("past_key_values"))
    past = cache.get_seq_length() if cache is not None else 0
    return (past + torch.arange(T, device=ids.device)).expand(ids.shape[0], T)


# ----------------------------------------------------------------------------- task and policy
class ScriptTask(Task):
    """Problems whose prompt is exactly ``prompt_tokens`` single-token words; the answer is a digit."""

    name = "script"

    def __init__(self, tok, size: Size, script: Script, fmt=DEFAULT_FORMAT):
        super().__init__(fmt)
        pieces = {i: tok.decode([i]) for i in script.neutral}
        self.words = [i for i, p in pieces.items() if p.startswith(" ")
                      and tok.encode(p, add_special_tokens=False) == [i]]
        self.tok, self.P = tok, size.prompt_tokens

    def sample(self, n: int, seed: int, split: str = "train") -> list[Problem]:
        rng = np.random.default_rng([seed, split == "test"])
        out = []
        for j in range(n):
            ids = rng.choice(self.words, size=self.P).tolist()
            q = self.tok.decode(ids)
            if len(self.tok.encode(q, add_special_tokens=False)) != self.P:
                raise ValueError(f"ScriptTask: prompt {j} does not encode to {self.P} tokens")
            out.append(Problem(id=f"{split}-{seed}-{j}", question=q, answer=str(int(rng.integers(0, 10)))))
        return out

    def prompt(self, problem: Problem) -> str:
        return problem.question


def make_model(tok, size: Size, seed: int, dtype=torch.float32):
    """Random-init ScriptedLlama for ``size`` (tied embeddings, as Llama-3.2-1B and Qwen2.5-1.5B)."""
    from transformers import LlamaConfig

    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=size.hidden, intermediate_size=size.intermediate,
                      num_hidden_layers=size.layers, num_attention_heads=size.heads,
                      num_key_value_heads=size.kv_heads, max_position_embeddings=4096, tie_word_embeddings=True,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
    torch.manual_seed(seed)
    model = scripted_llama_class()(cfg).to(dtype)
    model.generation_config.pad_token_id = tok.pad_token_id
    return model


def make_workload(size_name: str, seed: int = 0, device: str = "cpu", dtype=torch.float32):
    """(policy, task, size) for a named size; the policy's model carries the script."""
    size = SIZES[size_name]
    tok = build_tokenizer(size.vocab, seed)
    model = make_model(tok, size, seed, dtype)
    model.script = Script(tok, size)
    pol = Policy(model, tok, DEFAULT_FORMAT, device=device)
    return pol, ScriptTask(tok, size, model.script), size


def describe(pol: Policy, size: Size) -> dict:
    return {**asdict(size), "params": sum(p.numel() for p in pol.model.parameters()),
            "tokenizer_vocab": len(pol.tokenizer)}


if __name__ == "__main__":  # smoke: one GRPO generation of the quick size
    pol, task, size = make_workload("quick")
    s = pol.generate([task.prompt(p) for p in task.sample(1, 0)], n=2, max_thoughts=size.thoughts + 1,
                     max_thought_tokens=2 * size.thought_tokens)[0][0]
    print(json.dumps({"thoughts": len(s.thoughts), "answer": s.answer, "finish": s.finish, "text": s.text[-60:]}))
