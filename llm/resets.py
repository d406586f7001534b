"""Reset distributions of the rollouts: where a reset group restarts (``docs/llm.md``, "Reset distributions").

The same vocabulary as the tabular lab's ``cpi.resets`` (a reset distribution maps the policy to a
distribution over states to restart from; here a state is a prompt plus a kept prefix of thoughts). A
reset method keeps ``n_fresh`` fresh chains of a prompt and resets in ``n_resets`` *parent* chains: it
keeps thoughts ``1..k-1`` of the parent and samples continuations from there (``llm.rollouts``).

================= =================================================================== ================= ==========
name              reset thought ``k`` (1-based) of a parent                           ``cpi.resets``    --method
================= =================================================================== ================= ==========
``start``         no reset: fresh chains only                                         ``start``         ``grpo``
``random``        uniform over the thoughts of a uniform fresh chain, right or wrong  ``random`` (RR)   ``random``
                  (on-policy occupancy)
``random_failed`` uniform over the thoughts of a *failed* chain (RRPO; already a weak --                ``rrpo``
                  oracle: a failed chain holds an error)
``oracle``        the task's step checker: the failed chain's first wrong thought     ``oracle`` (CARO) ``oracle``
``noisy(q)``      the checker's first error with probability ``q``, else uniform over ``noisy(q)``      ``noisy``
                  the failed chain's thoughts (``--rollout.q``)
``self``          the model's own localization of its first error (SRPO); its         --                ``srpo``
                  measured hit rate places it on the ``q`` axis of ``noisy(q)``
================= =================================================================== ================= ==========

Parents: the first ``n_resets`` tries of a prompt with at least one thought that the reset accepts
(failed tries for every reset but ``random``, which accepts any). Since tries are i.i.d. samples of the
policy, "the first accepted try" is a uniform draw among them. ``random`` weighs every chain alike and
then every thought of it alike (``cpi``'s ``random`` weighs every state of a trajectory alike, so long
trajectories weigh more; the two agree when chains have one length, as with a fixed number of terms).

Randomness: every draw is seeded by ``(seed, prompt id, parent slot)`` through ``llm.seeds.mix_seed``,
so a reset is reproducible and does not depend on the other prompts of the step. ``noisy(q)`` draws its
uniform thought from the *same* stream as ``random_failed`` and its coin from another: ``noisy(0)``
picks exactly ``random_failed``'s thought and ``noisy(1)`` exactly the oracle's (common random numbers
across arms). When the checker finds no wrong thought in a failed parent, ``oracle`` (and ``noisy``'s
oracle branch) resets at the last thought, the one holding the wrong or missing answer.

:meth:`ResetDistribution.law` gives the exact law of ``k`` where it is a fixed function of the parent
(every reset but ``self``), for tests and for the expected hit rate of the first error.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np

from .seeds import mix_seed

RESETS: tuple[str, ...] = ("start", "random", "random_failed", "oracle", "noisy", "self")
"""The reset distributions, in the order of the module table."""

METHOD_RESET: dict[str, str] = {"grpo": "start", "random": "random", "rrpo": "random_failed", "oracle": "oracle",
                                "noisy": "noisy", "srpo": "self"}
"""``--method`` name -> reset distribution (the method names are aliases kept from the papers)."""

_UNIFORM_TAG, _COIN_TAG = 3, 13  # mix_seed tags of the uniform thought and of noisy's coin


@dataclass
class ResetContext:
    """What a reset may look at when it picks ``k``: the step's problems, the seed and prompt ids of its
    random streams, and (for ``self``) a localization call."""
    task: Any
    """the ``llm.tasks.Task`` (``first_error`` for the checker-based resets)"""
    problems: list
    """the step's problems; a parent's ``prompt`` indexes them"""
    seed: int
    """the step's seed"""
    prompt_ids: list[int]
    """a global id per problem (the data position): seeds the per-prompt streams"""
    localize: Callable[[list[str], list[int]], list[str]] | None = None
    """``(prompt texts, prompt indices) -> replies``: renders and samples the localization call (``self``)"""
    fmt: Any = None
    """the policy's ``ThoughtFormat`` (parses the localization replies)"""


@dataclass
class Parent:
    """One chain to reset: its prompt's index in the step, its slot ``j`` among that prompt's parents and
    the sample (``thoughts`` and ``thought_ends`` are read)."""
    prompt: int
    slot: int
    sample: Any

    @property
    def n(self) -> int:
        return len(self.sample.thoughts)


def _choice(k: int, **kw) -> dict:
    d = dict(k=int(k), loc_text=None, loc_index=None, loc_source=None, loc_boxed=None, fallback=None,
             oracle_pick=None)
    d.update(kw)
    return d


def uniform_thought(ctx: ResetContext, par: Parent) -> int:
    """The uniform draw of ``k`` in ``1..n`` shared by ``random``, ``random_failed`` and ``noisy``."""
    return random.Random(mix_seed(ctx.seed, _UNIFORM_TAG, ctx.prompt_ids[par.prompt], par.slot)).randint(1, par.n)


def checker_step(ctx: ResetContext, par: Parent) -> tuple[int, int | None]:
    """``(k, e)``: the first wrong thought ``e`` of the parent by the task's checker clipped to ``1..n``
    (``k = n`` when the checker finds none: ``e`` is then None)."""
    e = ctx.task.first_error(ctx.problems[par.prompt], list(par.sample.thoughts))
    return (par.n, None) if e is None else (min(max(int(e), 1), par.n), int(e))


def _one_hot(n: int, k: int) -> np.ndarray:
    p = np.zeros(n)
    p[k - 1] = 1.0
    return p


@dataclass(frozen=True)
class ResetDistribution:
    """Base class: which tries may be parents and how the reset thought ``k`` of each is chosen."""
    name: str = field(init=False, default="")
    resets: bool = field(init=False, default=True)
    """False for ``start`` (no reset groups: the builder samples fresh chains only)"""
    parent: Literal["failed", "any"] = field(init=False, default="failed")
    """which fresh tries can be parents (always with at least one thought)"""
    needs_checker: bool = field(init=False, default=False)
    """uses ``task.first_error`` (the task must have a step checker)"""

    def accepts(self, reward: float, n_thoughts: int) -> bool:
        """Can a try with this reward and this many thoughts be a parent?"""
        return n_thoughts > 0 and (self.parent == "any" or reward < 1.0)

    def choose(self, parents: list[Parent], ctx: ResetContext) -> list[dict]:
        """One dict per parent: ``k`` and the localization fields (``loc_text``, ``loc_index``,
        ``loc_source``, ``loc_boxed``), ``fallback`` (None or a reason) and ``oracle_pick`` (noisy: did the
        coin pick the checker)."""
        return [_choice(self.k_of(p, ctx)) for p in parents]

    def k_of(self, par: Parent, ctx: ResetContext) -> int:
        raise NotImplementedError

    def law(self, n: int, first_error: int | None) -> np.ndarray:
        """Exact law of ``k`` over ``1..n`` (shape (n,)) for a parent with ``n`` thoughts whose first wrong
        thought is ``first_error`` (None: the checker finds none)."""
        raise NotImplementedError(f"reset {self.name!r} has no fixed law")

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Start(ResetDistribution):
    """No reset: fresh chains only (GRPO)."""
    name: str = field(init=False, default="start")
    resets: bool = field(init=False, default=False)

    def choose(self, parents, ctx):
        raise ValueError("reset 'start' has no parents to reset in")


@dataclass(frozen=True)
class Random(ResetDistribution):
    """A uniform thought of a uniform fresh chain (right or wrong): on-policy occupancy, ``cpi``'s RR."""
    name: str = field(init=False, default="random")
    parent: str = field(init=False, default="any")

    def k_of(self, par, ctx):
        return uniform_thought(ctx, par)

    def law(self, n, first_error):
        return np.full(n, 1.0 / n)


@dataclass(frozen=True)
class RandomFailed(ResetDistribution):
    """A uniform thought of a failed chain (RRPO)."""
    name: str = field(init=False, default="random_failed")

    def k_of(self, par, ctx):
        return uniform_thought(ctx, par)

    def law(self, n, first_error):
        return np.full(n, 1.0 / n)


@dataclass(frozen=True)
class Oracle(ResetDistribution):
    """The task's step checker: the failed chain's first wrong thought (the last thought if it finds none)."""
    name: str = field(init=False, default="oracle")
    needs_checker: bool = field(init=False, default=True)

    def choose(self, parents, ctx):
        out = []
        for p in parents:
            k, e = checker_step(ctx, p)
            out.append(_choice(k, fallback=None if e is not None else "oracle_no_error_found", oracle_pick=True))
        return out

    def law(self, n, first_error):
        return _one_hot(n, n if first_error is None else min(max(int(first_error), 1), n))


@dataclass(frozen=True)
class Noisy(ResetDistribution):
    """The checker's first error with probability ``q``, else a uniform thought of the failed chain
    (``cpi.resets.Noisy``: ``q * oracle + (1 - q) * random``)."""
    q: float = 0.5
    name: str = field(init=False, default="noisy")
    needs_checker: bool = field(init=False, default=True)

    def __post_init__(self):
        if isinstance(self.q, bool) or not isinstance(self.q, (int, float)) or not 0.0 <= self.q <= 1.0:
            raise ValueError(f"noisy reset: q must be a number in [0, 1], got {self.q!r}")

    def choose(self, parents, ctx):
        out = []
        for p in parents:
            u = uniform_thought(ctx, p)  # drawn first, from random_failed's stream, whatever the coin says
            coin = random.Random(mix_seed(ctx.seed, _COIN_TAG, ctx.prompt_ids[p.prompt], p.slot)).random()
            if coin < self.q:
                k, e = checker_step(ctx, p)
                out.append(_choice(k, fallback=None if e is not None else "oracle_no_error_found", oracle_pick=True))
            else:
                out.append(_choice(u, oracle_pick=False))
        return out

    def law(self, n, first_error):
        return self.q * Oracle().law(n, first_error) + (1.0 - self.q) * np.full(n, 1.0 / n)

    def __str__(self) -> str:
        return f"noisy(q={self.q:g})"


@dataclass(frozen=True)
class Self(ResetDistribution):
    """The model's own localization of the step where its error originates (SRPO; ``llm.localize``):
    the last in-range box, else the last in-range "Step N", else step 1; each fallback is named."""
    name: str = field(init=False, default="self")

    def choose(self, parents, ctx):
        from .localize import localization_prompt, parse_localization
        if not parents:
            return []
        if ctx.localize is None or ctx.fmt is None:
            raise ValueError("reset 'self' needs ResetContext.localize and ResetContext.fmt (a localization call)")
        texts = ctx.localize([localization_prompt(ctx.task, ctx.problems[p.prompt], list(p.sample.thoughts))
                              for p in parents], [p.prompt for p in parents])
        out = []
        for p, text in zip(parents, texts):
            loc = parse_localization(text, p.n, ctx.fmt)
            out.append(_choice(loc.index, loc_text=text, loc_index=int(loc.index), loc_source=loc.source,
                               loc_boxed=loc.boxed,
                               fallback=None if loc.source == "boxed" else f"localization_{loc.source}"))
        return out


_CLASSES = {"start": Start, "random": Random, "random_failed": RandomFailed, "oracle": Oracle, "noisy": Noisy,
            "self": Self}


def make_reset(name: str, *, q: float = 0.5) -> ResetDistribution:
    """The reset distribution ``name`` (one of :data:`RESETS`, or a ``--method`` alias of
    :data:`METHOD_RESET`); ``q`` is used by ``noisy`` only."""
    key = METHOD_RESET.get(name, name)
    if key not in _CLASSES:
        raise ValueError(f"reset: expected one of {list(RESETS)} or a method {sorted(METHOD_RESET)}, got {name!r}")
    return Noisy(q=q) if key == "noisy" else _CLASSES[key]()


def reset_for(cfg) -> ResetDistribution:
    """The reset of a ``RolloutConfig`` (its ``method`` and ``q``)."""
    return make_reset(cfg.method, q=cfg.q)
