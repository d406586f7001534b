"""Transformer policies with thought-structured generation, tasks with verifiers, and the tiny
offline default (``docs/llm.md``; layout and conventions: ``docs/architecture.md``).

Heavy modules (torch, transformers) are imported lazily: ``from llm.policy import Policy``.
"""
from .thoughts import DEFAULT_FORMAT, TINY_FORMAT, ThoughtFormat  # noqa: F401

__all__ = ["ThoughtFormat", "DEFAULT_FORMAT", "TINY_FORMAT"]
