"""The reset-dial experiment (experiments/llm_dial.py): statistics against hand cases and references, the
gradient projections against backward passes, stage 1's reading of the tries against the training code,
the contrasts and the verdict rules."""
import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from dial import analysis, contrasts, stage1, stats  # noqa: E402
from dial.gradients import directional_derivatives, prompt_projection, reference_gradient  # noqa: E402
from reporting import dial as report_dial  # noqa: E402


# ----------------------------------------------------------------------------- statistics

def test_wilson_published_case_and_ends():
    lo, hi = stats.wilson(81, 263)  # Newcombe (1998), Table I: 0.2553 to 0.3662
    assert lo == pytest.approx(0.2553, abs=5e-5) and hi == pytest.approx(0.3662, abs=5e-5)
    assert stats.wilson(0, 5)[0] == 0.0 and stats.wilson(5, 5)[1] == 1.0
    assert all(math.isnan(x) for x in stats.wilson(0, 0))


def test_holm_hand_case_and_levels():
    p = [0.01, 0.04, 0.03]
    # sorted 0.01, 0.03, 0.04 -> 3 x 0.01 = 0.03, 2 x 0.03 = 0.06, max(0.06, 1 x 0.04) = 0.06
    assert stats.holm(p) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5, float("nan")])[0] == pytest.approx(1.0) and math.isnan(stats.holm([0.5, float("nan")])[1])
    lv = stats.holm_levels(p, 0.05)
    assert lv == pytest.approx([1 - 0.05 / 3, 1 - 0.05 / 1, 1 - 0.05 / 2])
    # an interval at the Holm level excludes 0 exactly when Holm rejects (first step)
    rng = np.random.default_rng(0)
    d = rng.normal(0.5, 1.0, 12)
    t = stats.paired_test(d)
    m, h = stats.t_interval(d, 1 - 0.05 / 3)
    assert (abs(m) > h) == (min(1.0, 3 * t["p"]) < 0.05)


def test_paired_test_matches_scipy():
    d = np.array([0.1, -0.02, 0.05, 0.08, 0.0, 0.03])
    t = stats.paired_test(d)
    assert t["p"] == pytest.approx(sps.ttest_1samp(d, 0.0).pvalue, rel=1e-12)
    assert math.isnan(stats.paired_test([0.1])["p"])


def test_mde_and_seeds_needed_agree():
    for sd, delta in ((0.02, 0.015), (0.01, 0.02), (1.0, 0.3)):
        n = stats.seeds_needed(delta, sd, alpha=0.05 / 3)
        assert stats.mde_paired(sd, n, 0.05 / 3) <= delta < stats.mde_paired(sd, n - 1, 0.05 / 3)
    assert stats.mde_paired(1.0, 1) == math.inf and stats.seeds_needed(0.0, 1.0) == 10_000


def test_crossing_area_and_snr_hand_cases():
    x, y = [0, 100, 200], [0.5, 0.54, 0.62]
    assert stats.crossing(x, y, 0.58) == pytest.approx(150.0)
    assert stats.crossing(x, y, 0.5) == 0.0 and stats.crossing(x, y, 0.7) is None
    assert stats.area(x, y) == pytest.approx(((0.5 + 0.54) / 2 + (0.54 + 0.62) / 2) / 2)
    assert stats.samples_for_snr(0.1, 0.3, 2.0) == pytest.approx(36.0) and stats.samples_for_snr(-0.1, 1) == math.inf


# ----------------------------------------------------------------------------- gradients (micro model)

@pytest.fixture(scope="module")
def micro():
    tiny = pytest.importorskip("llm.tiny")
    torch.manual_seed(0)
    return tiny.micro_policy(0)


def _samples(pol, n=6):
    from llm.config import RolloutConfig
    from llm.decode import sampling_kwargs
    from llm.tasks import get_task
    task = get_task("arith:terms=3", fmt=pol.fmt)
    cfg = RolloutConfig(max_thoughts=3, max_thought_tokens=6, max_new_tokens=18, temperature=1.0, top_p=1.0)
    rows = pol.generate([task.prompt(p) for p in task.sample(2, seed=0)], n=n // 2,
                        generator=torch.Generator().manual_seed(1), **sampling_kwargs(cfg))
    out = [s for r in rows for s in r]
    # a continuation-like sample: its first two response tokens are a given prefix (masked)
    s = rows[0][0]
    cont = dataclasses.replace(s, prefix_len=min(2, len(s.response_ids) - 1))
    return out + [cont], rows


def _grads(pol, samples):
    """Per-sample gradient of l_i = mean over the trainable suffix of log pi (backward, one at a time)."""
    from llm.losses import token_logprobs
    out = []
    for s in samples:
        pol.model.zero_grad()
        b = pol.collate([s])
        logp, _ = token_logprobs(pol.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits,
                                 b["input_ids"])
        m = b["response_mask"][:, 1:]
        ((logp * m).sum() / m.sum().clamp_min(1)).backward()
        out.append({k: p.grad.detach().clone() for k, p in pol.model.named_parameters()})
    return out


def test_directional_derivatives_equal_backward_dot_products(micro):
    samples, _ = _samples(micro)
    g = torch.Generator().manual_seed(3)
    vs = [{k: torch.randn(p.shape, generator=g) for k, p in micro.model.named_parameters()} for _ in range(2)]
    before = micro.model.config._attn_implementation
    S = directional_derivatives(micro, samples, vs, batch=4)
    ref = torch.tensor([[sum(float((gi[k] * v[k]).sum()) for k in v) for v in vs] for gi in _grads(micro, samples)],
                       dtype=torch.float64)
    torch.testing.assert_close(S, ref, rtol=1e-4, atol=1e-4)
    assert micro.model.config._attn_implementation == before  # eager attention only inside


def test_prompt_projection_is_minus_the_training_loss_gradient(micro):
    """(1/N) sum_i A_i s_i = -<grad loss, v> with the training loss (REINFORCE, seq-mean-token-mean)."""
    from llm.losses import policy_loss, token_logprobs
    samples, _ = _samples(micro)
    adv = torch.tensor([1.0, -0.5, 0.0, 0.7, -1.2, 0.3, 0.9])[:len(samples)]
    v = {k: torch.randn(p.shape, generator=torch.Generator().manual_seed(5)) for k, p in micro.model.named_parameters()}
    s = directional_derivatives(micro, samples, [v])[:, 0]
    micro.model.zero_grad()
    b = micro.collate(samples)
    logp, _ = token_logprobs(micro.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits,
                             b["input_ids"])
    policy_loss(logp, adv, b["response_mask"][:, 1:], agg="seq-mean-token-mean").loss.backward()
    ref = -sum(float((p.grad * v[k]).sum()) for k, p in micro.model.named_parameters())
    assert prompt_projection(adv, s) == pytest.approx(ref, rel=1e-4, abs=1e-5)


def test_reference_gradient_folds_are_the_weighted_score_gradients(micro):
    from llm.losses import token_logprobs
    _, rows = _samples(micro, n=8)
    rew = [[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0]]
    ref = reference_gradient(micro, rows, rew, temperature=0.7, folds=2, batch=3)
    for fold, (grp, r) in enumerate(zip(rows, rew)):  # prompt p is fold p mod 2
        micro.model.zero_grad()
        b = micro.collate(grp)
        logp, _ = token_logprobs(micro.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits / 0.7,
                                 b["input_ids"])
        w = torch.tensor([x - (sum(r) - x) / 3 for x in r])
        ((w * (logp * b["response_mask"][:, 1:]).sum(1)).sum() / 4).backward()
        for k, p in micro.model.named_parameters():
            torch.testing.assert_close(ref["g_folds"][fold][k], p.grad, rtol=1e-4, atol=1e-6)
    dot = sum(float((ref["g_folds"][0][k] * ref["g_folds"][1][k]).sum()) for k in ref["g_folds"][0])
    assert ref["sq_norm"] == pytest.approx(dot)


# ----------------------------------------------------------------------------- stage 1 reads tries as training does

def test_stage1_select_matches_the_rollout_builder_on_scripted_tries():
    from llm.config import RolloutConfig
    from llm.resets import make_reset
    from llm.rollouts import build_rollouts

    from tests.llm.test_rollouts import BAD, OK, FakePolicy, FakeTask, probs
    cases = {"parent in the first round": [OK, BAD, OK, OK, OK] + [OK] * 11,
             "parent among the extra tries": [OK] * 7 + [BAD] + [OK] * 8,
             "no failure: 4 + 4 new": [OK] * 16}
    cfg = RolloutConfig(method="rrpo")
    for name, script in cases.items():
        for method in ("rrpo", "random", "grpo"):
            pol = FakePolicy({"Q0:": list(script)}, cont={"Q0:": [OK] * 4})
            b = build_rollouts(pol, FakeTask(), probs(0), RolloutConfig(method=method), seed=0)
            fresh = [s.text for s, m in zip(b.samples, b.meta) if m["kind"] == "fresh"]
            tries = [(pol._mk("Q0:", t), 1.0 if t == OK else 0.0) for t in script]
            v = stage1.select(make_reset(method), tries, cfg)
            assert [script[t] for t in v.fresh] == fresh, (name, method)
            assert (v.parent is None) == (b.stats["parents"] == 0), (name, method)


# ----------------------------------------------------------------------------- contrasts and verdicts

class _Plan:
    lengths, seeds, arms, q = [3, 6], [0, 1, 2], ("grpo", "rrpo", "noisy", "oracle", "srpo"), 0.5

    def q_of(self, a):
        return {"rrpo": 0.0, "noisy": 0.5, "oracle": 1.0}.get(a)


def test_contrast_values_hand_case():
    out = {}
    for s in range(3):
        for L, base in ((3, 0.8), (6, 0.4)):
            gap = 0.01 * (s + 1) * (2 if L == 6 else 1)
            for a, f in (("grpo", 0.0), ("rrpo", 0.0), ("noisy", 0.5), ("oracle", 1.0), ("srpo", 0.0)):
                out[(L, a, s)] = {"final": base + f * gap}
    v = contrasts.contrast_values(_Plan(), out)
    np.testing.assert_allclose(v["C1"], [0.02, 0.04, 0.06])
    np.testing.assert_allclose(v["C2"], [0.01, 0.02, 0.03])
    np.testing.assert_allclose(v["C3"], [0.015, 0.03, 0.045])   # slope on {0, .5, 1} = oracle - rrpo, mean over L
    res = contrasts.contrasts(_Plan(), out, {"C1": 0.04, "C2": 0.02, "C3": 0.03})
    # 3 seeds of spread 0.02 about 0.04: t_{2} at the Holm levels is too wide for any to exclude 0
    assert all(c["lo"] < 0 < c["mean"] and c["verdict"] == "not testable at this size" for c in res.values())
    assert sorted(c["level"] for c in res.values()) == pytest.approx([0.95, 1 - 0.05 / 2, 1 - 0.05 / 3])
    plan = _Plan()
    plan.seeds = list(range(8))
    out = {(L, a, s): {"final": 0.5 + {"oracle": 1.0, "noisy": 0.5}.get(a, 0.0) * 0.02 * (1 + 0.05 * s) * (L / 3)}
           for s in plan.seeds for L in plan.lengths for a in plan.arms}
    res = contrasts.contrasts(plan, out, {"C1": 0.04, "C2": 0.02, "C3": 0.03})
    assert all(c["lo"] > 0 and c["verdict"] == "reproduced" for c in res.values())


def test_contrast_verdict_rules():
    base = dict(lo=-0.01, hi=0.02, mde=0.015, predicted=0.02)
    assert contrasts.contrast_verdict(base) == "no separation"
    assert contrasts.contrast_verdict({**base, "mde": 0.03}) == "not testable at this size"
    assert contrasts.contrast_verdict({**base, "mde": 0.03}, quick=True) == "not testable at quick size"
    assert contrasts.contrast_verdict({**base, "lo": 0.001}) == "reproduced"
    assert contrasts.contrast_verdict({**base, "hi": -0.001}) == "contradicted"
    assert contrasts.contrast_verdict({**base, "lo": float("nan")}, quick=True) == "not testable at quick size"


def test_stage1_verdict_rules():
    fit = {"ci": {"slope": (0.01, 0.05), "beta_ratio": (0.8, 1.3), "self_gap": (-0.03, -0.01)},
           "chord_residuals": {"noisy(0.5)": (0.001, 0.01)}}
    assert analysis.linearity_verdict(fit) == "reproduced"
    assert analysis.linearity_verdict({**fit, "chord_residuals": {"x": (0.02, 0.01)}}) == "not resolved at this size"
    assert analysis.linearity_verdict({**fit, "ci": {"slope": (-0.05, -0.01)}}) == "contradicted"
    assert analysis.proportionality_verdict(fit) == "consistent"
    assert analysis.proportionality_verdict({"ci": {"beta_ratio": (-20.0, 30.0)}}) == "not resolved at this size"
    assert analysis.proportionality_verdict({"ci": {"beta_ratio": (1.1, 2.0)}}) == "not proportional"
    assert analysis.self_verdict(fit) == "below the line"
    assert analysis.self_verdict({"ci": {"self_gap": (-0.01, 0.02)}}) == "on the line"
    assert analysis.difficulty_verdict([(0.01, (0.0, 0.02)), (0.05, (0.03, 0.07))]) == "reproduced"
    assert analysis.difficulty_verdict([(0.01, (0.0, 0.04)), (0.05, (0.03, 0.07))]) == "not resolved at this size"
    assert report_dial.quick_wording("not resolved at this size", "quick") == "not testable at quick size"
    assert report_dial.quick_wording("not resolved at this size", "full") == "not resolved at this size"
    assert report_dial.quick_wording("reproduced", "quick") == "reproduced"


def test_stage2_power_model():
    arms = {"oracle": {"proj": 0.12, "proj_sd": 0.3}, "random_failed": {"proj": 0.10, "proj_sd": 0.3}}
    p = analysis.stage2_power(arms, steps=100, prompts_per_step=16)
    eff = 40 * 0.02 / math.sqrt(0.18)
    assert p["effect_over_sd"] == pytest.approx(eff)
    assert stats.mde_paired(1.0, p["n_model"], 0.05 / 3) <= eff < stats.mde_paired(1.0, p["n_model"] - 1, 0.05 / 3)
    assert p["n"] == max(p["n_model"], 10)


def test_pilot_from_pools_paired_differences():
    rows = [dict(length=L, arm=a, seed=s, final=f) for L, vals in
            ((3, {"a": (0.5, 0.6), "b": (0.52, 0.58)}), (6, {"a": (0.3, 0.3), "b": (0.31, 0.35)}))
            for a, (f0, f1) in vals.items() for s, f in ((0, f0), (1, f1))]
    res = {"stage2": {"per_seed": rows, "predicted": {"C1": 0.02}, "plan": {"steps": 20}}, "config": {"profile": "quick"}}
    p = contrasts.pilot_from(res)
    # pairs a-b: L3 d = (-0.02, 0.02) var 0.0008; L6 d = (-0.01, -0.05) var 0.0008; pooled over 2 df
    assert p["df"] == 2 and p["sd"] == pytest.approx(math.sqrt(0.0008)) and p["delta"] == 0.02
    assert contrasts.pilot_from({"stage2": {"per_seed": [r for r in rows if r["seed"] == 0]}}) is None
    arms = {"oracle": {"proj": 0.12, "proj_sd": 0.3}, "random_failed": {"proj": 0.10, "proj_sd": 0.3}}
    pw = analysis.stage2_power(arms, 100, 16, pilot=p)
    assert pw["n_pilot"] == stats.seeds_needed(0.02, p["sd"], 0.05 / 3) and pw["n"] == max(pw["n_pilot"], 10)


def test_run_seconds_survive_reuse(tmp_path):
    """A finished run's DONE marker keeps its wall time; a later call that reuses the run reports it
    (old markers without a time are counted as unrecorded, never as 0 s)."""
    from dial import stage2

    plan = stage2.Plan(model="tiny", lengths=[3], seeds=[0], steps=1, prompts_per_step=1, eval_size=1,
                       eval_every=1, arms=("grpo", "rrpo", "srpo"))
    (stage2.run_dir(tmp_path, 3, "grpo", 0)).mkdir(parents=True)
    (stage2.run_dir(tmp_path, 3, "grpo", 0) / "DONE").write_text('{"seconds": 12.5}\n')
    (stage2.run_dir(tmp_path, 3, "rrpo", 0)).mkdir(parents=True)
    (stage2.run_dir(tmp_path, 3, "rrpo", 0) / "DONE").write_text("ok\n")
    assert stage2.run_seconds(plan, tmp_path) == {"runs_wall": 12.5, "runs_recorded": 1, "unrecorded": 1}
    assert stage2.run_one(plan, tmp_path, 3, "grpo", 0) == ("L3/grpo_s0", 0, 0.0)  # reused, not rerun


def test_a_run_trained_on_another_model_is_redone(tmp_path, monkeypatch):
    """A DONE marker records the model's fingerprint; a run of another model (a rebuilt tiny default) is
    removed, checkpoints and all, and trained again; a run of this model is reused."""
    from dial import stage2

    plan = stage2.Plan(model="tiny", lengths=[3], seeds=[0], steps=1, prompts_per_step=1, eval_size=1,
                       eval_every=1, arms=("grpo",))
    out = stage2.run_dir(tmp_path, 3, "grpo", 0)
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "old").write_text("x")
    (out / "DONE").write_text('{"seconds": 3.0, "model": "old-model"}\n')
    ran = []
    monkeypatch.setattr(stage2.subprocess, "call", lambda cmd, **kw: ran.append(cmd) or 0)
    name, rc, _ = stage2.run_one(plan, tmp_path, 3, "grpo", 0, model_fp="new-model")
    assert (name, rc) == ("L3/grpo_s0", 0)
    assert len(ran) == 1 and "--resume" not in ran[0] and not (out / "checkpoints").exists()
    assert json.loads((out / "DONE").read_text())["model"] == "new-model"
    assert stage2.run_one(plan, tmp_path, 3, "grpo", 0, model_fp="new-model") == ("L3/grpo_s0", 0, 0.0)
    assert len(ran) == 1  # reused
