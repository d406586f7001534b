"""Fixtures for llm tests: a random-init micro policy (no downloads, < 1 s), saved once per module for
the trainer tests (``model_dir``); every test runs on one torch thread."""
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


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """The micro policy saved as a model directory (``_trainkit.save_micro``)."""
    from ._trainkit import save_micro

    return save_micro(tmp_path_factory.mktemp("micro"))
