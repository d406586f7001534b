"""Trainer on the micro model: metrics, resume equivalence, NaN skip, LoRA, PPO+KL, CLI errors."""
from __future__ import annotations

import json
import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llm import checkpoint as C
from llm import train as T

from ._trainkit import (
    Killed,
    dies_after_step3,
    even_task,
    micro_cfg,
    read_metrics,
    strip_times,
)

pytest.importorskip("llm.tiny")


_read = read_metrics


REQUIRED = {"reward_mean", "accuracy", "adv_mean", "adv_std", "loss", "kl", "entropy", "tokens_generated",
            "reset_step_hist", "loc_fallback_rate", "step_time_s", "elapsed_s", "lr", "grad_norm", "skipped"}


@pytest.mark.parametrize("method", ["grpo", "srpo"])
def test_metrics_jsonl_every_step_and_eval(model_dir, tmp_path, method):
    out = tmp_path / "run"
    recs = T.train(micro_cfg(model_dir, str(out), method), task=even_task())
    on_disk = _read(out)
    assert on_disk == json.loads(json.dumps(recs))
    train = [r for r in on_disk if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert REQUIRED <= set(train[0])
    assert [r["step"] for r in on_disk if r["kind"] == "eval"] == [0, 2, 4]
    assert all(r["samples"] == 4 * 8 for r in train)
    assert any(r["grad_norm"] and r["grad_norm"] > 0 for r in train)  # the even-task gives signal
    if method == "srpo":
        assert sum(sum(r["reset_step_hist"].values()) for r in train) == sum(r["resets"] for r in train) > 0
    assert (out / "config.yaml").is_file() and (out / "final" / "config.json").is_file()
    assert [p.name for p in C.list_checkpoints(out / "checkpoints")] == ["step_00000002.pt", "step_00000004.pt"]


_Killed, _DiesAfterStep3 = Killed, dies_after_step3()


@pytest.mark.parametrize("method", ["srpo", "rrpo"])
def test_killed_and_resumed_run_reproduces_uninterrupted_metrics(model_dir, tmp_path, method):
    ref = T.train(micro_cfg(model_dir, str(tmp_path / "a"), method), task=even_task())
    out = tmp_path / "b"
    with pytest.raises(_Killed):
        _DiesAfterStep3(micro_cfg(model_dir, str(out), method), task=even_task()).run()
    assert max(r["step"] for r in _read(out)) == 3 and C.latest_checkpoint(out / "checkpoints").name.endswith("2.pt")
    (out / "checkpoints" / ".tmp-step_00000003.pt-1").write_bytes(b"half a file")  # died mid-write too
    resumed = T.train(micro_cfg(model_dir, str(out), method, "--resume"), task=even_task())
    assert strip_times(_read(out)) == strip_times(json.loads(json.dumps(ref)))
    assert strip_times(json.loads(json.dumps(resumed))) == strip_times(json.loads(json.dumps(ref)))
    a = torch.load(tmp_path / "a" / "checkpoints" / "step_00000004.pt", weights_only=False)
    b = torch.load(out / "checkpoints" / "step_00000004.pt", weights_only=False)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_nan_loss_skips_the_step_and_writes_no_poison(model_dir, tmp_path, monkeypatch):
    real = T.build_rollouts

    def poisoned(*a, **kw):
        rb = real(*a, **kw)
        if kw["prompt_ids"][0] == 4:  # step 2 (4 prompts per step)
            rb.advantages[:] = float("nan")
        return rb

    monkeypatch.setattr(T, "build_rollouts", poisoned)
    out = tmp_path / "nan"
    tr = T.Trainer(micro_cfg(model_dir, str(out), "grpo"), task=even_task())
    before = {}

    real_update = tr.update

    def spy(rb):
        if tr.step == 1:
            before.update({k: v.detach().clone() for k, v in tr.policy.model.state_dict().items()})
        res = real_update(rb)
        if tr.step == 1:  # nothing changed by the skipped step
            for k, v in tr.policy.model.state_dict().items():
                assert torch.equal(v, before[k]), k
        return res

    tr.update = spy
    with pytest.warns(UserWarning, match="non-finite loss"):
        recs = tr.run()
    train = {r["step"]: r for r in recs if r["kind"] == "train"}
    assert train[2]["skipped"] and train[2]["skip_reason"] == "non-finite loss"
    assert not train[1]["skipped"] and not train[3]["skipped"]
    st = C.load_checkpoint(out / "checkpoints" / "step_00000002.pt")
    assert not C.nonfinite_tensors(st["model"]) and not C.nonfinite_tensors(st["optimizer"])


def test_skipped_first_step_does_not_advance_the_schedule(model_dir, tmp_path, monkeypatch):
    """A skipped update (non-finite loss at step 1) leaves the schedule where it was: no
    "lr_scheduler.step() before optimizer.step()" warning, and the linear decay starts at step 2."""
    import warnings
    real = T.build_rollouts

    def poisoned(*a, **kw):
        rb = real(*a, **kw)
        if kw["prompt_ids"][0] == 0:  # step 1
            rb.advantages[:] = float("nan")
        return rb

    monkeypatch.setattr(T, "build_rollouts", poisoned)
    cfg = micro_cfg(model_dir, str(tmp_path / "s"), "grpo", "--steps", "2", "--eval_every", "0", "--schedule",
                    "linear", "--lr", "0.01")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recs = T.train(cfg, task=even_task())
    assert not [w for w in caught if "lr_scheduler.step()" in str(w.message)], [str(w.message) for w in caught]
    train = [r for r in recs if r["kind"] == "train"]
    assert train[0]["skipped"] and not train[1]["skipped"]
    # lr logged after each step: unchanged after the skipped step, one decay step (of 2) after step 2
    assert train[0]["lr"] == pytest.approx(0.01) and train[1]["lr"] == pytest.approx(0.005)


def test_lora_trains_adapters_only(model_dir, tmp_path):
    tr = T.Trainer(micro_cfg(model_dir, str(tmp_path / "l"), "grpo", "--lora.enabled", "true", "--lora.r", "4",
                             "--lora.alpha", "8", "--steps", "2", "--eval_every", "0"), task=even_task())
    base = {k: v.clone() for k, v in tr.policy.model.state_dict().items() if "lora" not in k}
    tr.run()
    after = tr.policy.model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in base.items())
    lora = [k for k in after if "lora_B" in k]
    assert lora and any(after[k].abs().sum() > 0 for k in lora)  # B starts at 0: it moved
    assert (tmp_path / "l" / "final" / "adapter_config.json").is_file()
    st = C.load_checkpoint(tmp_path / "l" / "checkpoints" / "step_00000002.pt")
    assert st["model"] and all("lora" in k for k in st["model"])


def test_ppo_inner_epochs_with_kl(model_dir, tmp_path):
    recs = T.train(micro_cfg(model_dir, str(tmp_path / "p"), "rrpo", "--loss.kind", "ppo", "--loss.inner_epochs",
                             "2", "--loss.beta", "0.05", "--steps", "2", "--eval_every", "0"), task=even_task())
    train = [r for r in recs if r["kind"] == "train"]
    # step 1: epoch 1 has policy == reference (KL 0) but epoch 2 runs after an update, so the logged
    # mean over both epochs is positive (it was 0 when only epoch 1 was logged)
    assert train[0]["kl"] > 0
    assert train[1]["kl"] > 0 and math.isfinite(train[1]["loss"])


def test_ppo_clip_fraction_is_logged_from_later_epochs(model_dir, tmp_path):
    """Epoch 1 of a PPO update has ratio 1 (nothing clipped); with a large lr and a narrow clip range the
    second epoch clips, and the logged clip_frac (mean over both epochs) must show it."""
    recs = T.train(micro_cfg(model_dir, str(tmp_path / "c"), "grpo", "--loss.kind", "ppo", "--loss.inner_epochs",
                             "2", "--loss.eps", "0.001", "--steps", "1", "--eval_every", "0"), task=even_task())
    (rec,) = [r for r in recs if r["kind"] == "train"]
    assert rec["grad_norm"] > 0 and 0 < rec["clip_frac"] <= 0.5  # at most the second epoch's tokens
    one = T.train(micro_cfg(model_dir, str(tmp_path / "c1"), "grpo", "--loss.kind", "ppo", "--loss.eps", "0.001",
                            "--steps", "1", "--eval_every", "0"), task=even_task())
    assert [r for r in one if r["kind"] == "train"][0]["clip_frac"] == 0.0  # one epoch: ratio 1 throughout


@given(st.lists(st.integers(1, 90), min_size=0, max_size=60), st.integers(1, 20), st.sampled_from([0, 1, 64, 300]))
@settings(max_examples=80, deadline=None)
def test_micro_batches_partition_sorted_and_capped(lengths, max_seqs, max_tokens):
    chunks = T.micro_batches(lengths, max_seqs, max_tokens)
    flat = [i for c in chunks for i in c]
    assert sorted(flat) == list(range(len(lengths)))                       # every sample exactly once
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)      # longest first
    for c in chunks:
        assert 1 <= len(c) <= max_seqs
        if max_tokens and len(c) > 1:
            assert len(c) * max(lengths[i] for i in c) <= max_tokens
    k = len(chunks) + 3
    eq = T.split_to(chunks, lengths, k)
    assert len(eq) == k and sorted(i for c in eq for i in c) == list(range(len(lengths)))


def test_micro_batches_hand_case():
    # lengths 50, 10, 40, 10 -> order 0, 2, 1, 3; 90 tokens: [0] (2 x 50 > 90), [2, 1] (2 x 40; 3 x 40 > 90), [3]
    assert T.micro_batches([50, 10, 40, 10], 8, 90) == [[0], [2, 1], [3]]
    assert T.micro_batches([50, 10, 40, 10], 2, 0) == [[0, 2], [1, 3]]
    assert T.split_to([[0], [2, 1], [3]], [50, 10, 40, 10], 4) == [[0], [2], [1], [3]]
    assert T.split_to([[0]], [5], 3) == [[0], [], []]


def test_length_grouped_passes_give_the_same_gradient(model_dir, tmp_path):
    """One pass over the whole batch vs token-capped, length-sorted passes: equal gradients."""
    grads = []
    for extra in (["--micro_batch_size", "1000", "--micro_batch_tokens", "0"],
                  ["--micro_batch_size", "5", "--micro_batch_tokens", "120"]):
        tr = T.Trainer(micro_cfg(model_dir, str(tmp_path / str(len(grads))), "srpo", *extra), task=even_task())
        probs, pos = T.step_problems(tr.train_set, 1, 4, 0)
        rb = T.build_rollouts(tr.policy, tr.task, probs, tr.cfg.rollout, seed=3, prompt_ids=pos)
        got = {}
        tr.opt.register_step_pre_hook(  # the gradient the optimizer is about to apply
            lambda opt, args, kwargs: got.update({n: p.grad.clone() for n, p in tr.policy.model.named_parameters()}))
        tr.update(rb)
        grads.append(got)
        lengths = [len(s.prompt_ids) + len(s.response_ids) for s in rb.samples]
    assert len(T.micro_batches(lengths, 5, 120)) > 2
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, rtol=1e-4, atol=1e-7, msg=name)


def test_scheduler_shapes():
    """transformers' schedules: warm-up from 0 over 2 steps, then linear decay to 0 at step 10."""
    from llm.config import parse_args
    cfg = parse_args(["--steps", "10", "--warmup_steps", "2", "--schedule", "linear", "--lr", "1.0"])
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    s = T.make_scheduler(opt, cfg)
    lrs = []
    for _ in range(10):
        lrs.append(s.get_last_lr()[0])
        opt.step()
        s.step()
    assert lrs[:3] == pytest.approx([0.0, 0.5, 1.0]) and lrs[-1] == pytest.approx(1 / 8)
    for kind, last in (("constant", 1.0), ("cosine", 0.5 * (1 + math.cos(math.pi * 7 / 8)))):
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        s = T.make_scheduler(opt, parse_args(["--steps", "10", "--warmup_steps", "2", "--schedule", kind]))
        for _ in range(9):
            opt.step()
            s.step()
        assert s.get_last_lr()[0] == pytest.approx(last)


def test_step_problems_cover_epoch_and_are_seeded():
    data = list(range(10))
    seen = [p for s in range(1, 6) for p in T.step_problems(data, s, 2, seed=0)[0]]
    assert sorted(seen) == data
    assert T.step_problems(data, 3, 2, 0) == T.step_problems(data, 3, 2, 0)
    assert T.step_problems(data, 3, 2, 0)[1] == [4, 5]


@pytest.mark.parametrize("args, match", [
    (["--method", "dpo"], "method must be one of"),
    (["--task", "nosuchtask"], "task"),
    (["--model", "./no/such/dir"], "does not exist"),
    (["--n_fresh", "4", "--rollouts_per_prompt", "6", "--n_resets", "3"], "budget too small"),
    (["--method", "oracle", "--task", "rg:chain_sum"], "step checker"),
])
def test_cli_errors_before_model_load(args, match, capsys, monkeypatch):
    import llm.policy
    monkeypatch.setattr(llm.policy.Policy, "from_pretrained", classmethod(lambda *a, **k: pytest.fail("loaded")))
    assert T.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("llm.train: error:") and re.search(match, err), err


def test_existing_checkpoints_need_resume(model_dir, tmp_path):
    out = tmp_path / "r"
    C.save_checkpoint(out / "checkpoints", 1, {"model": {}})
    with pytest.raises(ValueError, match="--resume"):
        T.Trainer(micro_cfg(model_dir, str(out), "grpo"), task=even_task())


@pytest.mark.slow
@pytest.mark.parametrize("method", ["grpo", "rrpo", "srpo", "oracle"])
def test_twenty_steps_on_the_tiny_default_improve_training_reward(method, tmp_path):
    """Slow (about 15 s each): the warm-started tiny default on arith, 20 steps at the default lr and
    batch. Training reward is measured on a fixed set of 256 training problems x 8 samples at the
    training temperature (1.0 here), before (step 0) and after, so that step-to-step problem
    difficulty does not drown the change (probe standard error about 0.011)."""
    from llm.config import parse_args
    torch.set_num_threads(1)
    cfg = parse_args(["--method", method, "--steps", "20", "--eval_every", "0",
                      "--out_dir", str(tmp_path / method), "--progress", "false",
                      "--temperature", "1.0", "--top_p", "1.0"])
    tr = T.Trainer(cfg)
    probe = tr.train_set[:256]

    def reward() -> float:
        g = torch.Generator().manual_seed(123)
        out = tr.policy.generate([tr.task.prompt(p) for p in probe], n=8, temperature=1.0, generator=g,
                                 max_thoughts=cfg.rollout.max_thoughts,
                                 max_thought_tokens=cfg.rollout.max_thought_tokens)
        return sum(tr.task.reward(p, s.text) for p, row in zip(probe, out) for s in row) / (8 * len(probe))

    before = reward()
    tr.run()
    after = reward()
    print(f"\n{method}: probe reward {before:.3f} -> {after:.3f}")  # shown with -s (the README table)
    assert after > before, (method, before, after)


def test_tensorboard_is_optional(model_dir, tmp_path):
    import importlib.util
    args = ("--tensorboard", "true", "--steps", "1", "--eval_every", "0")
    if importlib.util.find_spec("tensorboard") is None:
        with pytest.warns(UserWarning, match="tensorboard package is not installed"):
            recs = T.train(micro_cfg(model_dir, str(tmp_path / "tb"), "grpo", *args), task=even_task())
    else:
        recs = T.train(micro_cfg(model_dir, str(tmp_path / "tb"), "grpo", *args), task=even_task())
        assert (tmp_path / "tb" / "tb").is_dir()
    assert [r["step"] for r in recs] == [1]
