"""Row 1 of issue 16: each rollout batch is cut into ``mini_batches`` mini-batches of whole prompts, one
AdamW step each; the lr schedule advances per optimizer step; resume continues exactly. Row 2: the paper's
GRPO baseline (PPO clip + dual clip, token-mean, unbiased std) runs through the same loop."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from llm import checkpoint as C
from llm import train as T
from llm.rollouts import RolloutBatch
from llm.update import mini_batch_indices

from ._trainkit import even_task, micro_cfg, read_metrics, strip_times

_read = read_metrics


def _sub(rb: RolloutBatch, idx: list[int]) -> RolloutBatch:
    return RolloutBatch(samples=[rb.samples[j] for j in idx], rewards=rb.rewards[idx], advantages=rb.advantages[idx],
                        group_ids=rb.group_ids[idx], prompt_index=[rb.prompt_index[j] for j in idx],
                        meta=[rb.meta[j] for j in idx], stats=rb.stats)


def test_mini_batch_indices_hold_whole_prompts():
    class RB:
        prompt_index = [0, 0, 1, 1, 1, 2, 3, 3]

        def __len__(self):
            return 8

        prompt_groups = RolloutBatch.prompt_groups

    assert mini_batch_indices(RB(), 1) == [list(range(8))]
    assert mini_batch_indices(RB(), 2) == [[0, 1, 5], [2, 3, 4, 6, 7]]  # prompts 0, 2 | 1, 3
    assert mini_batch_indices(RB(), 4) == [[0, 1], [2, 3, 4], [5], [6, 7]]
    assert mini_batch_indices(RB(), 3) == [[0, 1, 6, 7], [2, 3, 4], [5]]  # 4 prompts in 3: sizes 2, 1, 1
    with pytest.raises(ValueError):
        mini_batch_indices(RB(), 0)


@pytest.mark.parametrize("method", ["grpo", "srpo"])
def test_mini_batches_equal_sequential_single_batch_updates(model_dir, tmp_path, method):
    """mini_batches=2 on one rollout batch = two optimizer steps, the first on half of the prompts (0, 2),
    the second on the other half (computed at the updated weights): exactly what two mini_batches=1
    updates on the halves give. So each mini-batch is one AdamW step, and only the first is on-policy."""
    tr2 = T.Trainer(micro_cfg(model_dir, str(tmp_path / "a"), method, "--mini_batches", "2"), task=even_task())
    tr1 = T.Trainer(micro_cfg(model_dir, str(tmp_path / "b"), method), task=even_task())
    tr1.policy.model.load_state_dict(tr2.policy.model.state_dict())
    probs, pos = T.step_problems(tr2.train_set, 1, 4, 0)
    rb = T.build_rollouts(tr2.policy, tr2.task, probs, tr2.cfg.rollout, seed=3, prompt_ids=pos)
    st = tr2.update(rb)
    assert st.opt_steps == 2 and not st.skipped
    halves = mini_batch_indices(rb, 2)
    assert [sorted({rb.prompt_index[j] for j in h}) for h in halves] == [[0, 2], [1, 3]]
    for h in halves:
        tr1.update(_sub(rb, h))
    for (name, a), b in zip(tr2.policy.model.named_parameters(), tr1.policy.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, msg=name)
    steps = {int(s["step"]) for s in tr2.opt.state_dict()["state"].values()}
    assert steps == {2} and tr2.sched.last_epoch == 2


def test_optimizer_steps_and_schedule_per_mini_batch(model_dir, tmp_path):
    """2 training steps x 2 mini-batches = 4 AdamW steps; a linear schedule of length 4 (the lr is logged
    after each training step: 0.01 * (1 - 2/4), then 0)."""
    cfg = micro_cfg(model_dir, str(tmp_path / "s"), "srpo", "--steps", "2", "--eval_every", "0", "--mini_batches",
                    "2", "--schedule", "linear", "--lr", "0.01")
    assert cfg.optimizer_steps == 4
    tr = T.Trainer(cfg, task=even_task())
    recs = [r for r in tr.run() if r["kind"] == "train"]
    assert [r["opt_steps"] for r in recs] == [2, 2]
    assert [r["lr"] for r in recs] == pytest.approx([0.005, 0.0])
    assert {int(s["step"]) for s in tr.opt.state_dict()["state"].values()} == {4}


def test_killed_and_resumed_run_with_mini_batches_reproduces(model_dir, tmp_path):
    extra = ("--mini_batches", "2", "--schedule", "cosine", "--warmup_steps", "2")
    ref = T.train(micro_cfg(model_dir, str(tmp_path / "a"), "srpo", *extra), task=even_task())

    class Dies(T.Trainer):
        def log(self, rec):
            super().log(rec)
            if rec["kind"] == "train" and rec["step"] == 3:
                raise KeyboardInterrupt

    out = tmp_path / "b"
    with pytest.raises(KeyboardInterrupt):
        Dies(micro_cfg(model_dir, str(out), "srpo", *extra), task=even_task()).run()
    T.train(micro_cfg(model_dir, str(out), "srpo", *extra, "--resume"), task=even_task())
    assert strip_times(_read(out)) == strip_times(json.loads(json.dumps(ref)))
    a = torch.load(tmp_path / "a" / "checkpoints" / "step_00000004.pt", weights_only=False)
    b = C.load_checkpoint(out / "checkpoints" / "step_00000004.pt")
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 8
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_paper_grpo_baseline_runs_with_ratios_after_the_first_mini_batch(model_dir, tmp_path):
    """The paper's GRPO (configs/paper_grpo.yaml's loss on the micro model): PPO ratios are 1 on the first
    mini-batch and move after its step, so the later mini-batches can clip; the advantages use the
    unbiased std."""
    args = ("--steps", "2", "--eval_every", "0", "--mini_batches", "2", "--loss.kind", "ppo", "--dual_clip", "3",
            "--agg", "token-mean", "--adv_std", "unbiased", "--eps", "0.001")
    tr = T.Trainer(micro_cfg(model_dir, str(tmp_path / "g"), "grpo", *args), task=even_task())
    probs, pos = T.step_problems(tr.train_set, 1, 4, 0)
    rb = T.build_rollouts(tr.policy, tr.task, probs, tr.cfg.rollout, seed=3, prompt_ids=pos,
                          adv_std=tr.cfg.loss.adv_std)
    from llm.losses import group_advantages
    torch.testing.assert_close(rb.advantages, group_advantages(rb.rewards, rb.group_ids, std="unbiased"))
    before = copy.deepcopy(tr.policy.model.state_dict())
    st = tr.update(rb)
    assert st.opt_steps == 2 and st.clip > 0  # eps 0.001: the second mini-batch's ratios leave the clip range
    assert any(not torch.equal(before[k], v) for k, v in tr.policy.model.state_dict().items())


def test_mini_batches_must_divide_the_prompts():
    from llm.config import parse_args
    with pytest.raises(ValueError, match="mini_batches"):
        parse_args(["--prompts_per_step", "6", "--mini_batches", "4"])
