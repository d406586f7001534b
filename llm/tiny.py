"""The tiny offline default: a small Llama built from a config, a character-level tokenizer made
with ``tokenizers``, and a supervised warm start on the built-in arithmetic task.

* :func:`micro_policy`: random-init micro model, in-process, for tests (< 1 s).
* :func:`ensure_tiny`: builds the warm-started default into a cache directory on first use
  (deterministic from the seed, minutes on two CPU cores) and returns that HF directory; it is
  loaded with ``Policy.from_pretrained`` like any other model. ``python -m llm.tiny`` builds it and
  prints its accuracy and localization accuracy.

The warm start mixes solution chains (``prompt -> t1;t2;...;[a]``) and localization examples
(``localization_prompt`` of a chain with one injected error -> ``[k]``), so SRPO's
self-localization starts above chance and RL has room (target 30-70% greedy accuracy).
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

TINY_TASK = dict(min_terms=3, max_terms=5, digits=1, ops="+-")
"""Default difficulty of the built-in task the tiny model is trained on (``ArithTask`` keywords)."""

TINY_ARCH = dict(hidden_size=96, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4,
                 num_key_value_heads=4, max_position_embeddings=512)
"""Architecture of the tiny default (about 0.3M parameters with the character vocabulary)."""

TRAIN = dict(steps=900, batch_size=64, lr=3e-3, warmup=50, loc_frac=0.35, weight_decay=0.01)
"""Supervised warm start: AdamW, linear warm-up then cosine decay; ``loc_frac`` of each batch are
localization examples."""


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


def _llama(tokenizer, seed: int, **arch):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id, bos_token_id=None, tie_word_embeddings=True, **arch)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def micro_policy(seed: int = 0) -> Policy:
    """Random-init micro Llama (hidden 32, 2 layers) + char tokenizer, TINY_FORMAT, on CPU."""
    tok = char_tokenizer()
    model = _llama(tok, seed, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                   num_key_value_heads=2, max_position_embeddings=256)
    return Policy(model, tok, TINY_FORMAT)


def tiny_dir() -> Path:
    """Cache directory of the warm-started default: ``$CREDIT_RESETS_CACHE/tiny`` (default
    ``~/.cache/credit_resets/tiny``)."""
    root = os.environ.get("CREDIT_RESETS_CACHE") or Path.home() / ".cache" / "credit_resets"
    return Path(root) / "tiny"


def resolve_model(name_or_dir: str) -> str:
    """``"tiny"`` -> :func:`ensure_tiny`; an existing local directory -> itself; a path-like string that
    does not exist -> ValueError; anything else is passed on as a hub name."""
    if not isinstance(name_or_dir, (str, Path)):
        raise TypeError(f"name_or_dir: expected a str, got {type(name_or_dir).__name__}")
    s = str(name_or_dir)
    if s == TINY:
        return str(ensure_tiny())
    if Path(s).is_dir():
        return s
    if s.startswith(("/", "./", "../", "~")) or s.endswith(os.sep) or os.sep + os.sep in s or Path(s).exists():
        raise ValueError(f"name_or_dir: model directory {s!r} does not exist (or is not a directory)")
    return s
