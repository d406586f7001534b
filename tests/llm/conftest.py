"""Fixtures for llm tests: a random-init micro policy (no downloads, < 1 s)."""
import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _threads():
    torch.set_num_threads(1)


@pytest.fixture
def micro():
    """Random-init micro Llama + char tokenizer with TINY_FORMAT markers (``llm.tiny.micro_policy``)."""
    from llm.tiny import micro_policy

    return micro_policy(seed=0)
