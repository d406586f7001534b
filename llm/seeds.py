"""Deterministic seeds derived from integers (run seed, step, prompt, rank), independent of Python's hash
seed: every stream of randomness in the trainer and the rollouts is ``mix_seed(seed, tag, ...)``."""
from __future__ import annotations


def mix_seed(*xs: int) -> int:
    """63-bit seed from integers (splitmix64-style mixing of each value into the state)."""
    h = 0x9E3779B97F4A7C15
    for x in xs:
        h = (h ^ (int(x) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF
