"""Stage 1 of the reset experiment: the rollouts of every reset arm from ONE policy, without training.

Common random numbers across arms (so arm differences are paired per prompt):

1. every prompt gets 16 fresh chains once; each arm reads them as a training step would
   (``llm.rollouts.split_tries`` with the arm's reset: the first 5 tries, the first 12 when they hold no
   parent, tries 13-16 as the "new chains" of a prompt without a parent; ``start`` takes the first 8);
2. the reset of each arm picks ``k`` with ``llm.rollouts.choose_reset_steps`` (the training code) and one
   seed for all arms, so ``random_failed`` and ``noisy(q)`` draw the same uniform thought and
   ``noisy(q)`` the same coin for every ``q`` (its picks are ``random_failed``'s or the oracle's);
3. each distinct reset point (prompt, parent, k) gets its 4 continuations once, shared by every arm that
   picks it; ``self`` localizes each failed parent once.

Then every trained sample of every arm gets its group advantage (``llm.losses.group_advantages``, as in
training) and its projection ``s_i`` on the reference direction (``gradients``), and each arm's
per-prompt projection is ``(1/8) sum_i A_i s_i`` (split into the fresh and the reset group).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from llm.config import RolloutConfig
from llm.decode import sampling_kwargs
from llm.losses import group_advantages
from llm.resets import Noisy, make_reset
from llm.rollouts import choose_reset_steps, localization_kwargs, localizer, prefix_ids_for_reset, split_tries

from .gradients import directional_derivatives, reference_gradient

TRIES = 16  # 5 first-round tries, 7 more while no parent is found (max_tries 12), 4 new chains


def arms(qs=(0.25, 0.5, 0.75)) -> dict:
    """Arm label -> reset distribution, in plotting order; noisy arms are labelled ``noisy(q)``."""
    out = {"start": make_reset("start"), "random": make_reset("random"), "random_failed": make_reset("random_failed")}
    out.update({f"noisy({q:g})": Noisy(q=q) for q in qs})
    out.update({"oracle": make_reset("oracle"), "self": make_reset("self")})
    return out


def arm_q(label: str) -> float | None:
    """The position of an arm on the q axis of noisy(q): random_failed 0, noisy(q) q, oracle 1."""
    if label == "random_failed":
        return 0.0
    if label == "oracle":
        return 1.0
    if label.startswith("noisy("):
        return float(label[6:-1])
    return None


@dataclass
class ArmView:
    """One arm's trained samples of one prompt: indices of its fresh tries, its parent try (or None), its
    reset step and the tries it sampled (for the token count)."""
    fresh: list[int]
    parent: int | None
    used: int
    choice: dict | None = None


def select(reset, tries: list, cfg: RolloutConfig) -> ArmView:
    """How a training step with ``reset`` reads one prompt's 16 scored tries (module docstring)."""
    if not reset.resets:
        return ArmView(fresh=list(range(cfg.rollouts_per_prompt)), parent=None, used=cfg.rollouts_per_prompt)
    first, n_par, n_fresh = cfg.n_fresh + cfg.n_resets, cfg.n_resets, cfg.n_fresh
    pos = {id(s): t for t, (s, _) in enumerate(tries)}
    used = first
    par, kept = split_tries(tries[:first], n_par, n_fresh, reset)
    if len(par) < n_par:
        used = cfg.max_tries
        par, kept = split_tries(tries[:used], n_par, n_fresh, reset)
    fresh = [pos[id(s)] for s, _ in kept]
    need = cfg.rollouts_per_prompt - len(par) * cfg.continuations_per_reset - len(fresh)
    fresh += list(range(cfg.max_tries, cfg.max_tries + need))
    return ArmView(fresh=fresh, parent=pos[id(par[0])] if par else None, used=used + need)


def sample_tries(pol, task, problems, cfg: RolloutConfig, seed: int) -> list[list[tuple]]:
    """16 scored i.i.d. tries per prompt, drawn lazily: 8 for every prompt (GRPO's group, every first round),
    the other 8 only for prompts whose first round (``n_fresh + n_resets`` tries) holds no failed try with a
    thought (the reset arms then read up to 16)."""
    first = cfg.n_fresh + cfg.n_resets
    prompts = [task.prompt(p) for p in problems]

    def draw(which, n, g):
        rows = pol.generate([prompts[i] for i in which], n=n, generator=g, **sampling_kwargs(cfg)) if which else []
        return [[(s, float(task.reward(problems[i], s.text))) for s in row] for i, row in zip(which, rows)]

    tries = draw(list(range(len(problems))), TRIES // 2, torch.Generator().manual_seed(seed))
    short = [i for i, t in enumerate(tries) if not any(r < 1.0 and s.thoughts for s, r in t[:first])]
    for i, more in zip(short, draw(short, TRIES - TRIES // 2, torch.Generator().manual_seed(seed + 7))):
        tries[i] += more
    return tries


def continuations(pol, task, problems, tries, points: list[tuple], cfg: RolloutConfig, seed: int) -> dict:
    """``{(prompt, parent try, k): [(sample, reward)] * continuations_per_reset}`` for each distinct point."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for j in range(0, len(points), 64):
        chunk = points[j:j + 64]
        pars = [tries[i][t][0] for i, t, _ in chunk]
        pre = [prefix_ids_for_reset(par, k) for par, (_, _, k) in zip(pars, chunk)]
        caps = [[c for c in getattr(par, "cap_ends", ()) if c <= len(q)] for par, q in zip(pars, pre)]
        rows = pol.continue_many([task.prompt(problems[i]) for i, _, _ in chunk], pre, cfg.continuations_per_reset,
                                 generator=g, prefix_cap_ends=caps, **sampling_kwargs(cfg))
        for key, row in zip(chunk, rows):
            out[key] = [(s, float(task.reward(problems[key[0]], s.text))) for s in row]
    return out


def choose_all(pol, task, problems, tries, arm_resets: dict, cfg: RolloutConfig, seed: int) -> tuple[dict, dict]:
    """Each arm's views of every prompt (reset steps filled in) and the localization reply tokens of ``self``."""
    views, loc_tokens = {}, {}
    g = torch.Generator().manual_seed(seed + 1)
    for label, reset in arm_resets.items():
        vs = [select(reset, tries[i], cfg) for i in range(len(problems))]
        flat = [(i, tries[i][v.parent][0]) for i, v in enumerate(vs) if v.parent is not None]
        toks: dict[int, int] = {}

        def complete(prompts, which, toks=toks):
            replies = pol.complete(prompts, generator=g, **localization_kwargs(cfg, pol.fmt))
            for i, r in zip(which, replies):
                toks[i] = toks.get(i, 0) + len(pol.encode(r))
            return replies

        ch = choose_reset_steps(reset, task, problems, flat, seed, list(range(len(problems))),
                                localize=localizer(pol, cfg, complete), fmt=pol.fmt) if reset.resets else []
        for (i, _), c in zip(flat, ch):
            vs[i].choice = c
        views[label], loc_tokens[label] = vs, toks
    return views, loc_tokens


def groups_of(views, tries, conts, loc_tokens, cfg: RolloutConfig) -> dict:
    """Per arm, per prompt: the trained sequences (keys ``("t", prompt, try)`` / ``("c", prompt, parent, k,
    j)``), their advantages (``llm.losses.group_advantages``: fresh group 0, reset group 1, as in training),
    the reset statistics (step, parent length, first error, informative flag) and the tokens sampled."""
    out = {}
    for label, vs in views.items():
        rows = []
        for i, v in enumerate(vs):
            keys = [("t", i, t) for t in v.fresh]
            rew = [tries[i][t][1] for t in v.fresh]
            gid = [0] * len(v.fresh)
            toks = sum(len(tries[i][t][0].response_ids) for t in range(v.used))
            row = dict(k=None, n=None, e=None, informative=None, fallback=None, parent_reward=None)
            if v.parent is not None:
                key = (i, v.parent, v.choice["k"])
                keys += [("c", *key, j) for j in range(len(conts[key]))]
                rew += [r for _, r in conts[key]]
                gid += [1] * len(conts[key])
                toks += sum(len(c.response_ids) - c.prefix_len for c, _ in conts[key]) + loc_tokens[label].get(i, 0)
                row.update(k=v.choice["k"], n=len(tries[i][v.parent][0].thoughts), e=v.choice.get("true_first_error"),
                           informative=len({r for _, r in conts[key]}) > 1, fallback=v.choice.get("fallback"),
                           parent_reward=tries[i][v.parent][1])
            adv = group_advantages(torch.tensor(rew), torch.tensor(gid), eps=1e-6).double().tolist()
            row.update(keys=keys, adv=adv, n_fresh=len(v.fresh), tokens=toks,
                       fresh_reward=float(np.mean([tries[i][t][1] for t in v.fresh])))
            rows.append(row)
        out[label] = rows
    return out


def project(rows: dict, s_of: dict, K: int, norm: float) -> None:
    """Fill each row's projections: ``proj_folds`` (one per reference fold) and their mean ``proj``, split
    into ``proj_fresh`` / ``proj_reset``, in units of the estimated ``|grad J|`` (``norm``); ``s_of`` maps a
    sequence key to its (K,) projections (needed only where the advantage is not 0)."""
    zero = np.zeros(K)
    for rs in rows.values():
        for r in rs:
            N = len(r["keys"])
            S = np.stack([s_of[k] if a != 0.0 else zero for k, a in zip(r["keys"], r["adv"])])   # (N, K)
            part = np.asarray(r["adv"], dtype=float)[:, None] * S / (N * norm)                 # (N, K)
            r["proj_folds"] = part.sum(0).tolist()
            r["proj"] = float(part.sum(0).mean())
            r["proj_fresh"] = float(part[:r["n_fresh"]].sum(0).mean())
            r["proj_reset"] = float(part[r["n_fresh"]:].sum(0).mean())
            r["proj_reset_folds"] = part[r["n_fresh"]:].sum(0).tolist()
            del r["keys"], r["adv"]


def run_length(pol, task, cfg: RolloutConfig, *, prompts: int, ref_prompts: int, ref_samples: int, seed: int,
               qs=(0.25, 0.5, 0.75), folds: int = 2, batch: int = 64, log=print) -> dict:
    """Stage 1 at one difficulty: the per-prompt rows of every arm and the reference direction's quality."""
    t0, c0 = time.perf_counter(), time.process_time()
    problems = task.sample(prompts, seed=seed, split="train")
    tries = sample_tries(pol, task, problems, cfg, seed)
    arm_resets = arms(qs)
    views, loc_tokens = choose_all(pol, task, problems, tries, arm_resets, cfg, seed)
    points = sorted({(i, v.parent, v.choice["k"]) for vs in views.values() for i, v in enumerate(vs)
                     if v.parent is not None})
    conts = continuations(pol, task, problems, tries, points, cfg, seed + 2)
    t_roll, c_roll = time.perf_counter() - t0, time.process_time() - c0
    ref_probs = task.sample(ref_prompts, seed=seed + 1000, split="train")
    g = torch.Generator().manual_seed(seed + 3)
    ref_rows = pol.generate([task.prompt(p) for p in ref_probs], n=ref_samples, generator=g, **sampling_kwargs(cfg))
    ref_rew = [[float(task.reward(p, s.text)) for s in row] for p, row in zip(ref_probs, ref_rows)]
    ref = reference_gradient(pol, ref_rows, ref_rew, cfg.temperature, folds=folds, batch=batch)
    del ref_rows
    t_ref, c_ref = time.perf_counter() - t0 - t_roll, time.process_time() - c0 - c_roll
    # projections of every trained sequence with a non-zero advantage in some arm, on every fold
    rows = groups_of(views, tries, conts, loc_tokens, cfg)
    need = sorted({k for rs in rows.values() for r in rs for k, a in zip(r["keys"], r["adv"]) if a != 0.0})
    seqs = [tries[k[1]][k[2]][0] if k[0] == "t" else conts[k[1:4]][k[4]][0] for k in need]
    S = directional_derivatives(pol, seqs, ref["g_folds"], batch=batch).numpy() if seqs else np.zeros((0, folds))
    norm = math.sqrt(ref["sq_norm"]) if ref["sq_norm"] > 0 else float("nan")
    project(rows, dict(zip(need, S)), folds, norm)
    t_all, c_all = time.perf_counter() - t0, time.process_time() - c0
    log(f"    stage 1 {task.settings()}: {prompts} prompts, {len(points)} reset points, {len(seqs)} sequences "
        f"projected; reference {ref['chains']} chains in {folds} folds (fold cosine {ref['fold_cosine']:.2f}); "
        f"{t_all:.0f} s ({c_all:.0f} s CPU)")
    first_round = [r for i in range(prompts) for _, r in tries[i][:cfg.n_fresh + cfg.n_resets]]
    return dict(task=task.settings(), prompts=prompts, rows=rows, success=float(np.mean(first_round)),
                success_n=len(first_round), ref=dict(sq_norm=ref["sq_norm"], fold_cosine=ref["fold_cosine"],
                                                     folds=folds, chains=ref["chains"], prompts=ref["prompts"],
                                                     success=float(np.mean(ref_rew))),
                points=len(points), sequences=len(seqs),
                seconds=dict(rollouts=t_roll, reference=t_ref, total=t_all),
                cpu_seconds=dict(rollouts=c_roll, reference=c_ref, total=c_all))
