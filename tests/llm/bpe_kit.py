"""Test fixture: a small byte-level BPE tokenizer trained locally with ``tokenizers`` (a chat template, the
verbose ``</thought>`` delimiter spanning several tokens, as with real models) and a micro Llama taught
by heart to answer one arith problem with a wrong chain and to localize that chain's error, so that the
decode engine, thought segmentation, localization parsing and the suffix mask can be checked on a
tokenizer whose pieces are not characters."""
from __future__ import annotations

import torch

from llm.policy import Policy
from llm.tasks import get_task
from llm.thoughts import DEFAULT_FORMAT

SPECIALS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
CHAIN = "3+5=8</thought>8-2=7</thought>\\boxed{7}"
"""The memorised (wrong) chain for 3+5-2: its first wrong thought is thought 2."""
LOC_REPLY = "Step 1 adds correctly. Step 2 subtracts 2 from 8 and writes 7, which is wrong.\n\\boxed{2}"


def task_and_problem():
    task = get_task("arith", fmt=DEFAULT_FORMAT)
    return task, task.make_problem([3, 5, 2], ["+", "-"])


def bpe_tokenizer(vocab_size: int = 700):
    """Byte-level BPE trained on the prompts this fixture uses (plus some arithmetic text). Byte-level
    pre-tokenization splits ``</thought>`` into ``</``, ``thought`` and ``>`` (and merges like ``>\\\\``
    can join its end to the next thought), so the delimiter is never one token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from llm.localize import localization_prompt

    task, prob = task_and_problem()
    corpus = [task.prompt(prob), localization_prompt(task, prob, DEFAULT_FORMAT.split(CHAIN)), LOC_REPLY,
              CHAIN] + [f"{a}+{b}={a + b}</thought>{a + b}-{b}={a}</thought>\\boxed{{{a}}}"
                        for a in range(10) for b in range(10)]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                                   eos_token="<|im_end|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def bpe_policy(*, steps: int = 60, seed: int = 0) -> Policy:
    """The micro Llama on :func:`bpe_tokenizer`, trained by heart (Adam, ``steps`` full-batch steps) on:
    chat(task prompt) -> :data:`CHAIN`; chat(localization prompt of CHAIN) -> :data:`LOC_REPLY` + EOS."""
    from llm.localize import localization_prompt
    from llm.tiny import build_llama

    tok = bpe_tokenizer()
    model = build_llama(tok, seed, hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=2,
                        num_key_value_heads=2, max_position_embeddings=1024)
    pol = Policy(model, tok, DEFAULT_FORMAT)
    task, prob = task_and_problem()
    pairs = [(pol.chat_prompt(task.prompt(prob)), pol.encode(CHAIN)),
             (pol.chat_prompt(localization_prompt(task, prob, DEFAULT_FORMAT.split(CHAIN))),
              pol.encode(LOC_REPLY) + [tok.eos_token_id])]
    T = max(len(p) + len(t) for p, t in pairs)
    ids = torch.full((len(pairs), T), pol.pad_id)
    att = torch.zeros((len(pairs), T), dtype=torch.long)
    lmask = torch.zeros((len(pairs), T - 1))
    for i, (p, t) in enumerate(pairs):
        ids[i, :len(p) + len(t)] = torch.tensor(p + t)
        att[i, :len(p) + len(t)] = 1
        lmask[i, len(p) - 1:len(p) + len(t) - 1] = 1.0
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        lp = pol.logprobs(ids, att)
        loss = -(lp * lmask).sum() / lmask.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return pol
