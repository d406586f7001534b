"""``update_forward``: a whole ``llm.update.update`` call with the shared-prefix (``shared``) or packed
(``packed``) forward moves the parameters exactly as the naive padded forward does.

Each case builds one rollout batch (GRPO, SRPO with a scripted localizer so that its reset groups share
prompt + a non-empty prefix, RRPO), then runs ``update`` from the same weights with each forward and
compares the parameters after the step(s). float64 micro model (with a float64 RMSNorm and float64
log-probs in the naive path, so float32 rounding does not hide a mistake): every parameter within
``REL`` of the size of its update. Covered: several passes (``micro_batch_size`` below a group),
LoRA (non-zero B), ``mini_batches`` 2, PPO with 2 inner epochs and a KL reference, every aggregation.
The tiny default in float32 (as trained): within ``REL32`` (stated in the test).
"""
from __future__ import annotations

import copy

import pytest
import torch

import llm.update as U
from llm import distributed as D
from llm.config import parse_args
from llm.rollouts import build_rollouts

from ._trainkit import even_task

REL = 1e-9
"""float64: max |theta_f - theta_naive| <= REL * max |theta_naive - theta_0| for every parameter tensor"""
REL32 = 2e-3
"""float32 tiny default: ||d_f - d_naive|| <= REL32 ||d_naive|| per tensor (d = parameter change); AdamW's first
step is ~lr * sign(g) wherever |g| >> eps, so float32 summation-order noise in near-zero gradients shows up"""


@pytest.fixture
def float64_math(monkeypatch):
    """Keep float64 models in float64: Hugging Face's LlamaRMSNorm computes in float32 whatever the dtype, and
    ``losses.token_logprobs`` (the naive path) casts logits to float32; the shared path keeps float64 already."""
    from transformers.models.llama import modeling_llama as ml

    def rms(self, h):
        return self.weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

    def token_logprobs(logits, input_ids, with_entropy=False):
        logits = logits[:, :-1]
        logz = torch.logsumexp(logits, dim=-1)
        logp = logits.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1) - logz
        ent = None
        if with_entropy:
            with torch.no_grad():
                lp = logits - logz.unsqueeze(-1)
                ent = -(lp.exp() * lp).sum(-1)
        return logp, ent

    monkeypatch.setattr(ml.LlamaRMSNorm, "forward", rms)
    monkeypatch.setattr(U, "token_logprobs", token_logprobs)


def config(method: str, *extra: str):
    return parse_args(["--method", method, "--prompts_per_step", "4", "--max_thoughts", "3", "--max_thought_tokens",
                       "10", "--max_new_tokens", "30", "--loc_max_new_tokens", "8", "--micro_batch_size", "5",
                       "--lr", "1e-3", "--progress", "false", *extra])


def rollouts(pol, method: str, cfg):
    """One rollout batch of 4 prompts. SRPO's localizer is scripted to name step 2 (the micro model's own
    replies are noise, which parse to step 1: an empty prefix), so reset groups share a non-empty prefix."""
    task = even_task()
    if method == "srpo":
        pol = copy.copy(pol)
        pol.complete = lambda prompts, **kw: ["[2]"] * len(prompts)
    return build_rollouts(pol, task, task.sample(4, seed=1), cfg.rollout, seed=3, prompt_ids=list(range(4)))


def run_update(pol, rb, cfg, forward: str, ref=None) -> tuple[dict, U.UpdateStats]:
    """Parameters after ``update`` from ``pol``'s weights with ``forward``; ``pol`` is not changed."""
    p = copy.copy(pol)
    p.model = copy.deepcopy(pol.model)
    cfg = copy.deepcopy(cfg)
    cfg.update_forward = forward
    params = [q for q in p.model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    sched = U.make_scheduler(opt, schedule="constant", warmup_steps=0, total_steps=10)
    st = U.update(p, p.model, opt, sched, params, rb, cfg, D.DistInfo(), ref_model=ref)
    return {n: q.detach().clone() for n, q in p.model.named_parameters() if q.requires_grad}, st


def assert_same_step(pol, rb, cfg, ref=None, rel=REL, norm=False):
    theta0 = {n: q.detach().clone() for n, q in pol.model.named_parameters() if q.requires_grad}
    want, st_n = run_update(pol, rb, cfg, "naive", ref)
    assert st_n.opt_steps == cfg.mini_batches * cfg.loss.inner_epochs and not st_n.skipped
    for forward in ("shared", "packed"):
        got, st = run_update(pol, rb, cfg, forward, ref)
        for k in ("tokens", "loss", "kl", "clip", "entropy", "grad_norm"):
            assert getattr(st, k) == pytest.approx(getattr(st_n, k), rel=max(rel, 1e-12), abs=1e-12), (forward, k)
        moved = 0
        for n, w in want.items():
            d = w - theta0[n]
            if norm:
                err, scale = float((got[n] - w).norm()), float(d.norm())
            else:
                err, scale = float((got[n] - w).abs().max()), float(d.abs().max())
            assert err <= rel * scale + 1e-15, f"{forward} {n}: {err:.2e} vs update {scale:.2e}"
            moved += scale > 0
        assert moved > 0
    return st_n


@pytest.fixture
def pol64(micro, float64_math):
    micro.model.to(torch.float64)
    return micro


@pytest.mark.parametrize("method", ["grpo", "srpo", "rrpo"])
def test_same_parameters_as_naive(pol64, method):
    cfg = config(method)
    rb = rollouts(pol64, method, cfg)
    if method == "srpo":
        assert any(s.prefix_len > 0 for s in rb.samples), "expected reset groups with a non-empty prefix"
    assert len(U.plan(rb, list(range(len(rb))), cfg, "shared")) > 1  # several passes, groups cut by the cap
    assert_same_step(pol64, rb, cfg)


def test_rows_out_of_group_order(pol64, monkeypatch):
    """Passes whose samples interleave groups (the planner never makes them; a caller may): the grouped
    rows are permuted (``SharedPrefixBatch.order``) and advantages follow them."""
    plan = U.plan

    def interleaved(rb, index, cfg, forward):
        return [sorted(c, key=lambda i: (i % 3, i)) for c in plan(rb, index, cfg, forward)]

    monkeypatch.setattr(U, "plan", interleaved)
    cfg = config("srpo", "--micro_batch_size", "12")
    rb = rollouts(pol64, "srpo", cfg)
    sb = U.make_pass(pol64, rb, [list(range(len(rb)))[i] for i in interleaved(rb, list(range(len(rb))), cfg,
                                                                              "shared")[0]], "shared").inputs
    assert sb.order != sorted(sb.order)
    assert_same_step(pol64, rb, cfg)


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-sum-norm"])
def test_other_aggregations(pol64, agg):
    cfg = config("srpo", "--agg", agg)
    assert_same_step(pol64, rollouts(pol64, "srpo", cfg), cfg)


def test_lora(pol64):
    from peft import LoraConfig, get_peft_model

    lc = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights=False, task_type="CAUSAL_LM",
                    target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    pol64.model = get_peft_model(pol64.model, lc).to(torch.float64)
    cfg = config("srpo")
    assert_same_step(pol64, rollouts(pol64, "srpo", cfg), cfg)


def test_mini_batches(pol64):
    cfg = config("srpo", "--mini_batches", "2")
    assert_same_step(pol64, rollouts(pol64, "srpo", cfg), cfg)


@pytest.mark.parametrize("method", ["grpo", "srpo"])
def test_ppo_inner_epochs_and_kl_reference(pol64, method):
    """PPO ratios against log-probs taken before the first step (old) and the k3 KL to a frozen reference
    (ref) come from the same forward under no_grad; 2 mini-batches x 2 inner epochs = 4 AdamW steps."""
    cfg = config(method, "--loss.kind", "ppo", "--inner_epochs", "2", "--beta", "0.1", "--mini_batches", "2",
                 "--eps", "0.01", "--agg", "token-mean")
    rb = rollouts(pol64, method, cfg)
    torch.manual_seed(0)
    ref = copy.deepcopy(pol64.model).eval().requires_grad_(False)
    with torch.no_grad():
        for q in ref.parameters():  # a reference that differs from the policy: the KL is not 0
            q.add_(1e-2 * torch.randn_like(q))
    st = assert_same_step(pol64, rb, cfg, ref=ref)
    assert st.kl > 0 and st.clip > 0


def test_gradient_checkpointing_same_step(pol64):
    """With gradient checkpointing on (the option applied before wrapping), every forward gives the same
    step as the naive forward without it."""
    from llm.shared_prefix import enable_gradient_checkpointing

    cfg = config("srpo")
    rb = rollouts(pol64, "srpo", cfg)
    theta_plain, _ = run_update(pol64, rb, cfg, "naive")
    enable_gradient_checkpointing(pol64.model)
    assert_same_step(pol64, rb, cfg)
    theta_ckpt, _ = run_update(pol64, rb, cfg, "naive")
    for n in theta_plain:
        torch.testing.assert_close(theta_ckpt[n], theta_plain[n], rtol=0, atol=1e-14)


def test_tiny_default_float32():
    """As trained: the tiny default in float32 (Hugging Face's RMSNorm, float32 log-probs); oracle resets at
    temperature 1.3, so that groups have reward variance and reset groups a non-empty prefix."""
    from llm.models import load_policy

    pol = load_policy("tiny")
    cfg = config("oracle", "--model", "tiny", "--task", "arith", "--max_thoughts", "12", "--max_thought_tokens", "16",
                 "--max_new_tokens", "64", "--micro_batch_size", "64", "--temperature", "1.3")
    task = pol.get_task()
    rb = build_rollouts(pol, task, task.sample(4, seed=0), cfg.rollout, seed=3, prompt_ids=list(range(4)))
    assert int((rb.advantages != 0).sum()) >= 4 and any(s.prefix_len > 0 for s in rb.samples)
    assert_same_step(pol, rb, cfg, rel=REL32, norm=True)


def test_resolve_forward():
    assert U.resolve_forward("auto", sharded=False) == "shared"
    assert U.resolve_forward("auto", sharded=True) == "packed"
    assert U.resolve_forward("naive", sharded=True) == "naive"
    with pytest.raises(ValueError, match="FSDP2"):
        U.resolve_forward("shared", sharded=True)
    with pytest.raises(ValueError, match="update_forward"):
        U.resolve_forward("fast", sharded=False)
    with pytest.raises(ValueError, match="update_forward"):
        parse_args(["--update_forward", "fast"])


def test_trainer_gradient_checkpointing_with_lora(tmp_path):
    """``--gradient_checkpointing true`` with LoRA: switched on in the trainer before wrapping (every decoder
    layer checkpointed), and one training step moves the adapter as it does without checkpointing."""
    from llm import train as T
    from transformers.modeling_layers import GradientCheckpointingLayer

    from ._trainkit import micro_cfg, save_micro

    model_dir = save_micro(tmp_path)
    args = ("--steps", "1", "--eval_every", "0", "--save_every", "0", "--lora.enabled", "true", "--lora.r", "4")
    out = {}
    for ckpt in ("false", "true"):
        tr = T.Trainer(micro_cfg(model_dir, str(tmp_path / ckpt), "srpo", *args, "--gradient_checkpointing", ckpt),
                       task=even_task())
        layers = [m for m in tr.policy.model.modules() if isinstance(m, GradientCheckpointingLayer)]
        assert layers and all(m.gradient_checkpointing == (ckpt == "true") for m in layers)
        assert tr.forward == "shared"
        rec = [r for r in tr.run() if r["kind"] == "train"][0]
        assert rec["opt_steps"] == 1
        out[ckpt] = {n: p.detach().clone() for n, p in tr.policy.model.named_parameters() if p.requires_grad}
    assert out["true"].keys() == out["false"].keys() and any("lora" in n for n in out["true"])
    for n in out["true"]:
        torch.testing.assert_close(out["true"][n], out["false"][n], rtol=1e-5, atol=1e-7, msg=n)
