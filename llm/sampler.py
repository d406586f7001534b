"""The sampling calls of one rollout step: which generator each call draws from, the chat-template
rendering of prompts, the localization call's keywords, and KV reuse across the step's calls
(``llm.rollouts`` builds the batches; ``docs/llm.md``, "Rollouts per method" and "KV reuse")."""
from __future__ import annotations

import torch

from .config_sections import RolloutConfig
from .decode import common_prefix, sampling_kwargs
from .localize import default_loc_tokens
from .seeds import mix_seed


def _n_generated(s) -> int:
    return len(s.response_ids) - s.prefix_len


def render_prompt(policy, text: str, mode: str):
    """``text``, or its chat-template token ids (``Policy.prompt_input``) when ``mode`` ("auto" / "on" /
    "off") and the tokenizer call for it."""
    if mode == "off":
        return text
    if hasattr(policy, "prompt_input"):
        return policy.prompt_input(text, mode)
    if mode == "on":
        raise ValueError("chat_template='on' but this policy has no tokenizer chat template")
    return text


def localization_kwargs(cfg: RolloutConfig, fmt) -> dict:
    """Keywords of the localization call (``Policy.complete``) from ``cfg`` and the thought format: the
    budget (``loc_max_new_tokens`` or ``llm.localize.default_loc_tokens``), top_p (``loc_top_p`` or the
    rollouts' ``top_p``), temperature and where the reply stops (``loc_stop_at_answer``; default: at the
    first answer for compact prompts, at EOS for verbose ones)."""
    return dict(temperature=cfg.loc_temperature,
                max_new_tokens=cfg.loc_max_new_tokens or default_loc_tokens(fmt),
                top_p=cfg.top_p if cfg.loc_top_p is None else cfg.loc_top_p,
                stop_at_answer=fmt.compact_prompts if cfg.loc_stop_at_answer is None else cfg.loc_stop_at_answer)


class StepSampler:
    """Dispatches generate / continue_from / complete calls with the right generator(s)."""

    def __init__(self, policy, cfg: RolloutConfig, seed: int, prompt_ids: list[int]):
        self.policy, self.cfg, self.kw = policy, cfg, sampling_kwargs(cfg)
        dev = getattr(policy, "device", "cpu")
        if cfg.sampling_rng == "batched":
            self.shared = torch.Generator(device=dev).manual_seed(mix_seed(seed, 1))
            self.per = None
        else:
            self.shared = None
            self.per = [torch.Generator(device=dev).manual_seed(mix_seed(seed, 2, p)) for p in prompt_ids]
        self.tokens = 0  # all sampled tokens (fresh tries, parents, continuations, localization answers)
        self.fresh = 0   # fresh chains sampled
        # KV reuse: the tries' keys/values per prompt index, for the continuations and localization calls
        self.reuse = bool(getattr(cfg, "kv_reuse", False) and getattr(policy, "kv_reuse", False))
        self.kv: dict[int, list] = {}

    def gen(self, i: int) -> torch.Generator:
        return self.shared if self.per is None else self.per[i]

    def generate(self, prompts: list[str], which: list[int], n: int, keep_kv: bool = False) -> list[list]:
        """n fresh samples for each prompt ``which[j]`` (index into the step's prompts); ``keep_kv`` (with
        ``reuse``): keep their keys/values for later calls on the same prompt (:meth:`kv_for`)."""
        if not which or n <= 0:
            return [[] for _ in which]
        kw = dict(self.kw, keep_kv=True) if keep_kv and self.reuse else self.kw
        if self.per is None:
            out = self.policy.generate([prompts[i] for i in which], n=n, generator=self.shared, **kw)
        else:
            out = [self.policy.generate([prompts[i]], n=n, generator=self.per[i], **kw)[0] for i in which]
        for i, row in zip(which, out):
            for s in row:
                if getattr(s, "kv", None) is not None:
                    self.kv.setdefault(i, []).append(s.kv)
                    s.kv = None
        self.tokens += sum(_n_generated(s) for row in out for s in row)
        self.fresh += sum(len(row) for row in out)
        return out

    def kv_for(self, ids: list[list[int]], which: list[int]) -> list | None:
        """For each request (token ids ``ids[j]`` on prompt ``which[j]``) the kept keys/values of that
        prompt's try with the longest common prefix (None where there is none); None without reuse."""
        if not self.reuse or not self.kv:
            return None
        out = []
        for q, i in zip(ids, which):
            cands = self.kv.get(i, [])
            out.append(max(cands, key=lambda kv: common_prefix(q, kv.ids)) if cands else None)
        return out

    def continue_from(self, prompt, i: int, prefix_ids: list[int], k: int, caps: list[int]) -> list:
        out = self.policy.continue_from(prompt, prefix_ids, k, generator=self.gen(i), prefix_cap_ends=caps,
                                        **self.kw)
        self.tokens += sum(_n_generated(s) for s in out)
        return out

    def continue_many(self, prompts: list, which: list[int], prefixes: list[list[int]], caps: list[list[int]],
                      k: int) -> list[list]:
        """``k`` continuations for each (prompt ``which[j]``, prefix ``prefixes[j]`` with its cap ends
        ``caps[j]``). In batched mode all resets share one decode loop (``Policy.continue_many``: each
        prompt + prefix is prefilled once and fanned out to k rows); otherwise one ``continue_from`` call
        per reset."""
        if not which:
            return []
        if self.per is None and hasattr(self.policy, "continue_many"):
            kv = self.kv_for([self.policy.encode_prompt(prompts[i]) + list(q) for i, q in zip(which, prefixes)],
                             which)
            extra = {} if kv is None else {"kv_from": kv}
            out = self.policy.continue_many([prompts[i] for i in which], prefixes, k, generator=self.shared,
                                            prefix_cap_ends=caps, **self.kw, **extra)
            self.tokens += sum(_n_generated(s) for row in out for s in row)
            return out
        if self.reuse:  # per-prompt generators: one call per reset, still reusing the parent's keys/values
            return [self.continue_one(prompts, i, q, c, k) for i, q, c in zip(which, prefixes, caps)]
        return [self.continue_from(prompts[i], i, q, k, c) for i, q, c in zip(which, prefixes, caps)]

    def continue_one(self, prompts: list, i: int, prefix: list[int], caps: list[int], k: int) -> list:
        kv = self.kv_for([self.policy.encode_prompt(prompts[i]) + list(prefix)], [i])
        out = self.policy.continue_many([prompts[i]], [prefix], k, generator=self.gen(i), prefix_cap_ends=[caps],
                                        kv_from=kv, **self.kw)[0]
        self.tokens += sum(_n_generated(s) for s in out)
        return out

    def complete(self, texts: list, which: list[int]) -> list[str]:
        kw = localization_kwargs(self.cfg, self.policy.fmt)
        kv = self.kv_for([self.policy.encode_prompt(t) for t in texts], which) if self.reuse else None
        if self.per is None:
            out = self.policy.complete(texts, generator=self.shared, **kw, **({} if kv is None else {"kv_from": kv}))
        else:
            out = [self.policy.complete([t], generator=self.per[i], **kw,
                                        **({} if kv is None else {"kv_from": [kv[j]]}))[0]
                   for j, (t, i) in enumerate(zip(texts, which))]
        self.tokens += sum(len(self.policy.encode(t)) for t in out)
        return out
