"""Losses and advantages against hand-computed values; gradients only through trainable tokens."""
import math

import pytest
import torch
from hypothesis import given, strategies as st

from llm.losses import (aggregate, aggregate_parts, group_advantages, k3_kl, per_token_loss, policy_loss,
                        token_logprobs)


def test_group_advantages_hand_computed():
    # group 0: rewards 1,0,0,1 -> mean 0.5, population std 0.5 -> +-1 (eps 0)
    # group 1: all equal -> 0 ; group 2: 1,0,0 -> mean 1/3, std sqrt(2)/3 -> (2/3)/(sqrt2/3)=sqrt2, -(1/3)/(sqrt2/3)
    r = torch.tensor([1., 0., 0., 1., 1., 1., 1., 0., 0.])
    g = torch.tensor([0, 0, 0, 0, 1, 1, 5, 5, 5])
    a = group_advantages(r, g, eps=0.0)
    s2 = math.sqrt(2)
    expect = torch.tensor([1., -1., -1., 1., 0., 0., s2, -1 / s2, -1 / s2])
    torch.testing.assert_close(a, expect)


def test_group_advantages_zero_variance_and_tiny_std():
    assert torch.equal(group_advantages(torch.zeros(4), torch.zeros(4, dtype=torch.long)), torch.zeros(4))
    assert torch.equal(group_advantages(torch.ones(4), torch.zeros(4, dtype=torch.long)), torch.zeros(4))
    # std 5e-9 < 1e-8 -> zero even though the rewards differ
    r = torch.tensor([0.0, 1e-8, 0.0, 1e-8], dtype=torch.float64)
    assert torch.equal(group_advantages(r, torch.zeros(4, dtype=torch.long)), torch.zeros(4, dtype=torch.float64))
    # a singleton group is always zero
    assert group_advantages(torch.tensor([1.0]), torch.tensor([3])).item() == 0.0


@given(st.lists(st.integers(0, 1), min_size=2, max_size=16), st.integers(1, 4))
def test_group_advantages_properties(bits, n_groups):
    r = torch.tensor(bits, dtype=torch.float64)
    g = torch.arange(len(bits)) % n_groups
    a = group_advantages(r, g, eps=0.0)
    for k in range(n_groups):
        sel = g == k
        rk = r[sel]
        if rk.numel() == 0:
            continue
        if rk.std(unbiased=False) < 1e-8:
            assert torch.all(a[sel] == 0)
        else:  # mean 0, population std 1 within each group
            assert abs(a[sel].mean().item()) < 1e-9
            assert abs(a[sel].std(unbiased=False).item() - 1.0) < 1e-9


def test_group_advantages_bad_shapes():
    with pytest.raises(ValueError, match="group_ids"):
        group_advantages(torch.zeros(3), torch.zeros(4))


def test_reinforce_loss_hand_computed():
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, -4.0]])
    mask = torch.tensor([[1., 1., 0.], [0., 1., 1.]])
    adv = torch.tensor([2.0, -1.0])
    # per token -A*logp: row0 [2,4,(6)], row1 [(-0.5),-0.5,-4]
    # token-mean: (2+4-0.5-4)/4 = 0.375
    assert aggregate(per_token_loss(logp, adv)[0], mask, "token-mean").item() == pytest.approx(0.375)
    # seq-mean-token-mean: mean(3, -2.25) = 0.375 ... choose a case where they differ below
    mask2 = torch.tensor([[1., 1., 1.], [0., 0., 1.]])
    # row0 mean(2,4,6)=4 ; row1 -4 -> seq-mean 0 ; token-mean (12-4)/4 = 2
    lt = per_token_loss(logp, adv)[0]
    assert aggregate(lt, mask2, "seq-mean-token-mean").item() == pytest.approx(0.0)
    assert aggregate(lt, mask2, "token-mean").item() == pytest.approx(2.0)
    # seq-mean-token-sum-norm with L_norm = 3: (12 - 4) / (2 * 3)
    assert aggregate(lt, mask2, "seq-mean-token-sum-norm").item() == pytest.approx(8 / 6)
    assert aggregate(lt, mask2, "seq-mean-token-sum-norm", norm_len=8).item() == pytest.approx(8 / 16)


def test_ppo_clip_hand_computed():
    # ratios e^{0.5}=1.6487 (A>0: clipped at 1.2), e^{-0.5}=0.6065 (A>0: unclipped min picks ratio),
    # e^{0.5} with A<0: min(-1.6487, -1.2) = -1.6487 (unclipped), e^{-0.5} with A<0: clip 0.8 -> min(-0.6065,-0.8)=-0.8
    old = torch.zeros(2, 2)
    logp = torch.tensor([[0.5, -0.5], [0.5, -0.5]])
    adv = torch.tensor([1.0, -1.0])
    lt, d = per_token_loss(logp, adv, kind="ppo", old_logp=old, eps=0.2)
    e = math.exp
    torch.testing.assert_close(lt, torch.tensor([[-1.2, -e(-0.5)], [e(0.5), 0.8]]))
    torch.testing.assert_close(d["clipped"], torch.tensor([[1., 0.], [0., 1.]]))
    # asymmetric: eps_high 0.28 -> first token clipped at 1.28
    lt2, _ = per_token_loss(logp, adv, kind="ppo", old_logp=old, eps=0.2, eps_high=0.28)
    assert lt2[0, 0].item() == pytest.approx(-1.28)
    # clipped tokens get zero gradient
    lp = logp.clone().requires_grad_(True)
    per_token_loss(lp, adv, kind="ppo", old_logp=old)[0].sum().backward()
    assert lp.grad[0, 0] == 0 and lp.grad[1, 1] == 0
    assert lp.grad[0, 1].item() == pytest.approx(-e(-0.5))  # d/dlogp of -ratio*A = -ratio


def test_ppo_at_ratio_one_has_reinforce_gradient():
    torch.manual_seed(0)
    logp = (-torch.rand(3, 5)).requires_grad_(True)
    adv = torch.tensor([0.7, -1.3, 0.2])
    mask = (torch.rand(3, 5) > 0.3).float()
    g1, = torch.autograd.grad(aggregate(per_token_loss(logp, adv, kind="ppo")[0], mask), logp)
    g2, = torch.autograd.grad(aggregate(per_token_loss(logp, adv)[0], mask), logp)
    torch.testing.assert_close(g1, g2)


def test_k3_kl_hand_computed_and_nonnegative():
    logp = torch.tensor([-1.0, -2.0])
    ref = torch.tensor([-1.0, -1.0])
    # d = 0 -> 0 ; d = 1 -> e - 2
    torch.testing.assert_close(k3_kl(logp, ref), torch.tensor([0.0, math.e - 2]))
    x = torch.randn(100)
    assert torch.all(k3_kl(x, torch.randn(100)) >= 0)
    lt, d = per_token_loss(logp.view(1, 2), torch.tensor([0.0]), ref_logp=ref.view(1, 2), beta=0.1)
    torch.testing.assert_close(lt, 0.1 * torch.tensor([[0.0, math.e - 2]]))
    with pytest.raises(ValueError, match="ref_logp"):
        per_token_loss(logp.view(1, 2), torch.tensor([0.0]), beta=0.1)


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
@pytest.mark.parametrize("kind", ["reinforce", "ppo"])
def test_gradient_only_through_unmasked_tokens(mode, kind):
    torch.manual_seed(1)
    logp = (-torch.rand(4, 6)).requires_grad_(True)
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0], [0, 1, 0, 1, 0, 0]]).float()
    # poison masked positions: a huge masked value must not leak into the loss or the gradient
    with torch.no_grad():
        logp[2, 0] = -1e30
    out = policy_loss(logp, torch.tensor([1.0, -0.5, 2.0, 0.3]), mask, kind=kind, agg=mode)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert torch.all(logp.grad[mask == 0] == 0)
    assert torch.all(logp.grad[mask == 1] != 0)


def test_empty_mask_gives_zero():
    logp = torch.zeros(2, 3, requires_grad=True)
    loss = aggregate(per_token_loss(logp, torch.ones(2))[0], torch.zeros(2, 3))
    assert loss.item() == 0.0


def test_aggregate_parts_sum_over_shards_equals_whole():
    torch.manual_seed(2)
    lt = torch.randn(6, 5)
    mask = (torch.rand(6, 5) > 0.4).float()
    mask[3] = 0
    for mode in ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"]:
        whole = aggregate(lt, mask, mode)
        parts = [aggregate_parts(lt[s], mask[s], mode, norm_len=5) for s in (slice(0, 2), slice(2, 6))]
        assert (sum(p[0] for p in parts) / sum(p[1] for p in parts)).item() == pytest.approx(whole.item(), rel=1e-6)


def test_token_logprobs_matches_manual_softmax():
    torch.manual_seed(3)
    logits = torch.randn(2, 4, 7)
    ids = torch.randint(0, 7, (2, 4))
    logp, ent = token_logprobs(logits, ids, with_entropy=True)
    for b in range(2):
        for t in range(3):
            p = torch.softmax(logits[b, t].double(), -1)
            assert logp[b, t].item() == pytest.approx(math.log(p[ids[b, t + 1]].item()), abs=1e-5)
            assert ent[b, t].item() == pytest.approx(-(p * p.log()).sum().item(), abs=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        per_token_loss(torch.zeros(1, 2), torch.zeros(1), kind="grpo")
    with pytest.raises(ValueError, match="mode"):
        aggregate(torch.zeros(1, 2), torch.zeros(1, 2), "mean")
    with pytest.raises(ValueError, match="adv"):
        per_token_loss(torch.zeros(2, 2), torch.zeros(3))


def test_unbiased_std_matches_torch_std_plus_eps():
    """The paper's GRPO baseline (verl): A = (r - mean) / (torch.std(r) + 1e-6) per group (n - 1)."""
    r = torch.tensor([1., 0., 0., 1., 1., 1., 1., 0., 0., 1., 0., 0., 0., 0., 0., 0.])
    g = torch.tensor([0] * 4 + [1] * 2 + [5] * 3 + [7] * 7)
    a = group_advantages(r, g, eps=1e-6, std="unbiased")
    ref = torch.zeros_like(r)
    for k in g.unique():
        m = g == k
        x = r[m].double()
        ref[m] = ((x - x.mean()) / (x.std() + 1e-6)).float() if x.std() >= 1e-8 else 0.0
    torch.testing.assert_close(a, ref)
    # hand: 1,0,0,1 -> mean .5, unbiased std sqrt(1/3)
    torch.testing.assert_close(a[:4], torch.tensor([1., -1., -1., 1.]) * 0.5 / (math.sqrt(1 / 3) + 1e-6))
    assert group_advantages(torch.tensor([1.0]), torch.tensor([0]), std="unbiased").item() == 0.0
    with pytest.raises(ValueError, match="std"):
        group_advantages(r, g, std="sample")


def test_dual_clip_bounds_negative_advantage_loss():
    """Dual-clip PPO (Ye et al. 2020) with c = 3, eps = 0.2, against the formula written out:
    A < 0: min(max(-rho A, -clip(rho) A), -c A); A >= 0: max(-rho A, -clip(rho) A)."""
    ratio = torch.tensor([[5.0, 2.0, 0.5, 5.0, 1.0]])
    adv = torch.tensor([-1.0])
    old = torch.zeros(1, 5)
    logp = ratio.log().clone().requires_grad_(True)
    loss, diag = per_token_loss(logp, adv, kind="ppo", old_logp=old, eps=0.2, dual_clip=3.0)
    # by hand (A = -1): rho 5 -> max(5, 1.2) = 5 -> bounded to 3; rho 2 -> 2; rho .5 -> max(.5, .8) = .8; rho 1 -> 1
    torch.testing.assert_close(loss.detach(), torch.tensor([[3.0, 2.0, 0.8, 3.0, 1.0]]))
    assert diag["clipped"].tolist() == [[1.0, 0.0, 1.0, 1.0, 0.0]]
    loss.sum().backward()
    # d/dlogp of -rho A = rho (unclipped tokens); 0 where a clip or the dual bound is active
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, 2.0, 0.0, 0.0, 1.0]]))
    # positive advantages are untouched by the dual clip
    for a in (1.0, 0.0):
        x, _ = per_token_loss(ratio.log(), torch.tensor([a]), kind="ppo", old_logp=old, dual_clip=3.0)
        y, _ = per_token_loss(ratio.log(), torch.tensor([a]), kind="ppo", old_logp=old)
        assert torch.equal(x, y)
    with pytest.raises(ValueError, match="dual_clip"):
        per_token_loss(logp, adv, kind="ppo", old_logp=old, dual_clip=1.0)


def test_token_mean_vs_seq_mean_hand_example():
    """Two sequences: one trainable token with loss 4, three with loss 1 each. token-mean weighs every
    token 1/4: (4 + 3) / 4 = 1.75; seq-mean-token-mean weighs the sequences equally: (4 + 1) / 2 = 2.5, so
    the lone token gets weight 1/2 and each of the three 1/6 (the REINFORCE gradient per token)."""
    mask = torch.tensor([[1., 0., 0.], [1., 1., 1.]])
    lt = torch.tensor([[4., 9., 9.], [1., 1., 1.]])
    assert aggregate(lt, mask, "token-mean").item() == pytest.approx(1.75)
    assert aggregate(lt, mask, "seq-mean-token-mean").item() == pytest.approx(2.5)
    logp = torch.zeros(2, 3, requires_grad=True)
    adv = torch.tensor([-1.0, -1.0])  # l = -A log pi = log pi: d loss / d logp = the token weights
    for agg, w in (("token-mean", [[.25, 0, 0], [.25, .25, .25]]), ("seq-mean-token-mean", [[.5, 0, 0], [1 / 6] * 3])):
        logp.grad = None
        policy_loss(logp, adv, mask, agg=agg).loss.backward()
        torch.testing.assert_close(logp.grad, torch.tensor(w))
