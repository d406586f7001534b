"""Tiny default: char tokenizer, micro policy, model resolution, warm-start data; slow: the build and its targets."""
import math
import random

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from llm.localize import localization_prompt, parse_localization
from llm.tasks import ArithTask
from llm.thoughts import TINY_FORMAT
from llm.models import resolve_model
from llm.tiny import CHARS, TINY, char_tokenizer, micro_policy, tiny_dir
from llm.tiny import warm_start_batch as _batch
from llm.tiny import warm_start_pairs as _pairs


@given(st.text(alphabet=st.sampled_from(CHARS), max_size=40))
def test_char_tokenizer_round_trip(text):
    tok = char_tokenizer()
    ids = tok.encode(text, add_special_tokens=False)
    assert len(ids) == len(text)  # one token per character
    assert tok.decode(ids) == text  # Fuse decoder: no inserted spaces


def test_tokenizer_save_load(tmp_path):
    from transformers import AutoTokenizer

    tok = char_tokenizer()
    tok.save_pretrained(tmp_path)
    tok2 = AutoTokenizer.from_pretrained(tmp_path)
    s = "Q:3+5-2\nStep 1: 3+5=8;[8]"
    assert tok2.encode(s) == tok.encode(s) and tok2.decode(tok.encode(s)) == s
    assert tok2.pad_token_id == tok.pad_token_id and tok2.eos_token_id == tok.eos_token_id


def test_micro_policy_small_and_seeded():
    a, b, c = micro_policy(0), micro_policy(0), micro_policy(1)
    n = sum(p.numel() for p in a.model.parameters())
    assert n < 100_000
    pa, pb, pc = (next(x.model.parameters()) for x in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    assert a.fmt == TINY_FORMAT


def test_resolve_model_and_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CREDIT_RESETS_CACHE", str(tmp_path))
    assert tiny_dir() == tmp_path / "tiny"
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        resolve_model(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="does not exist"):
        resolve_model("./nope_model_dir")
    assert resolve_model("Qwen/Qwen2.5-0.5B") == "Qwen/Qwen2.5-0.5B"  # hub names pass through
    assert TINY == "tiny"


def test_localization_target_hand_example():
    from llm.tiny import localization_target

    assert localization_target(["3+5=8", "8-2=7", "7+7=14", "[14]"], 2) == "1:3+5=8|8y2:8-2=6|7n[2]"
    assert localization_target(["3+5=8", "8-2=6", "[5]"], 3) == "1:3+5=8|8y2:8-2=6|6y3:6|5n[3]"


def test_warm_start_examples_and_loss_mask():
    task = ArithTask(TINY_FORMAT)
    rng = random.Random(0)
    sol = _pairs(task, rng, 20, "sol", seed=0)
    for prompt, target in sol:
        q = prompt[2:-1]
        assert prompt == f"Q:{q}\n" and target.endswith(f"[{eval(q)}]")
    loc = _pairs(task, rng, 50, "loc", seed=1)
    for prompt, target in loc:
        q = prompt.split("\n")[0][2:]
        terms = [int(t) for t in q.replace("-", "+").split("+")]
        ops = [c for c in q if c in "+-"]
        prob = task.make_problem(terms, ops)
        steps = [line.split(": ", 1)[1] for line in prompt.split("\n")[1:-2]]
        assert prompt == localization_prompt(task, prob, steps)  # exactly the localization prompt
        k = task.first_error(prob, steps)                         # target ends with the checker's first error
        assert target.endswith(f"n[{k}]") and parse_localization(target, len(steps), TINY_FORMAT).index == k
        assert target.startswith(f"1:{steps[0].split('=')[0]}=") and target.count("y") == k - 1
    pol = micro_policy()
    ids, att, lm = _batch(pol, sol[:3] + loc[:3])
    for i, (prompt, target) in enumerate(sol[:3] + loc[:3]):
        P = len(pol.encode_prompt(prompt))
        # loss positions t predict ids[t+1]: exactly the target tokens
        predicted = ids[i, 1:][lm[i].bool()].tolist()
        assert pol.decode(predicted) == target and lm[i, :P - 1].sum() == 0


@pytest.mark.slow
def test_build_tiny_meets_targets(tmp_path, monkeypatch):
    """Builds the warm-started default (minutes on 2 cores) and checks the issue's targets:
    30-70% greedy accuracy on the default difficulty, localization clearly above chance."""
    from llm.policy import Policy
    from llm.tiny import ensure_tiny, evaluate_tiny

    from safetensors.torch import load_file

    from llm.tiny import SHIPPED

    monkeypatch.setenv("CREDIT_RESETS_CACHE", str(tmp_path))
    d = ensure_tiny(force=True)  # a real build into the empty cache, not the shipped copy
    assert d.parent == tmp_path and (d / "config.json").is_file() and ensure_tiny() == d  # cached
    # the committed weights are exactly what the build script makes (deterministic from the seed)
    built, shipped = load_file(d / "model.safetensors"), load_file(SHIPPED / "model.safetensors")
    assert built.keys() == shipped.keys() and all(torch.equal(built[k], shipped[k]) for k in built)
    pol = Policy.from_pretrained(str(d))
    assert pol.fmt == TINY_FORMAT and 3e5 <= sum(p.numel() for p in pol.model.parameters()) <= 5e6
    r = evaluate_tiny(pol, n=300)
    assert 0.30 <= r["accuracy"] <= 0.70, r
    # measured (seed 0): accuracy 0.66, injected-error localization 0.44 vs chance 0.24
    assert r["loc_accuracy_injected"] >= r["loc_chance_injected"] + 0.08, r
    assert r["n_own_failures"] > 0 and not math.isnan(r["loc_chance_own_failures"])


def test_shipped_tiny_default_is_used_without_a_build(tmp_path, monkeypatch):
    """A fresh machine (empty cache) gets the committed weights at once, with the current recipe."""
    import json

    from llm.tiny import SHIPPED, ensure_tiny, recipe

    monkeypatch.setenv("CREDIT_RESETS_CACHE", str(tmp_path))
    assert ensure_tiny() == SHIPPED
    assert json.loads((SHIPPED / "credit_resets.json").read_text())["recipe"] == json.loads(json.dumps(recipe(0)))
    assert resolve_model(TINY) == str(SHIPPED)
