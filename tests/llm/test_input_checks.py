"""Bad inputs at the public boundary: data rows with a null answer, prompts longer than the context,
out-of-vocabulary prefix ids, an empty batch for logprobs."""
from __future__ import annotations

import json

import pytest
import torch

from llm.tasks import FileTask, describe, get_task, long_prompts
from llm.thoughts import TINY_FORMAT


def _write(tmp_path, rows, name="d.jsonl"):
    p = tmp_path / name
    p.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return p


@pytest.mark.parametrize("bad, match", [
    ({"question": "2+2", "answer": None}, r"row 2 \(line 4\): 'answer' must be a non-empty text or number, got None"),
    ({"question": None, "answer": "4"}, r"row 2 \(line 4\): 'question' must be"),
    ({"question": "2+2", "answer": "  "}, r"row 2 \(line 4\): 'answer' must be"),
    ({"question": "2+2", "answer": True}, r"'answer' must be"),
    ({"question": "2+2", "answer": ["4"]}, r"'answer' must be"),
    (["2+2", "4"], r"row 2 \(line 4\): expected an object"),
    ({"question": "2+2"}, r"row 2 \(line 4\) lacks 'question' or 'answer'"),
])
def test_jsonl_rows_are_checked_and_named(tmp_path, bad, match):
    """A null answer used to become the string 'None', which \\boxed{None} then matched (reward 1)."""
    p = _write(tmp_path, [{"question": "1+1", "answer": "2"}, {"question": "1+2", "answer": 3}, "", bad])
    with pytest.raises(ValueError, match=match):
        FileTask(p)


def test_null_answer_in_parquet_is_refused(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    p = tmp_path / "d.parquet"
    pq.write_table(pa.table({"question": ["1+1", "2+2"], "answer": ["2", None]}), p)
    with pytest.raises(ValueError, match=r"row 1: 'answer' must be a non-empty text or number, got None"):
        FileTask(p)


def test_numbers_are_still_accepted_as_answers(tmp_path):
    t = FileTask(_write(tmp_path, [{"question": "1+1", "answer": 2}, {"question": "half", "answer": 0.5}]))
    assert [p.answer for p in t.problems] == ["2", "0.5"]
    assert describe(t.problems[1]) == "d.jsonl row 1 (line 2)"


def test_long_prompts_found_with_the_policy_tokenizer(micro, tmp_path):
    rows = [{"question": "1+1", "answer": "2"}, {"question": "9+" * 200 + "1", "answer": "1801"}]
    task = FileTask(_write(tmp_path, rows), fmt=TINY_FORMAT)
    limit = micro.max_len
    bad = long_prompts(task, task.problems + task.problems, micro.tokenizer, limit)  # duplicates counted once
    assert [(p.meta["row"], n) for p, n in bad] == [(1, len(micro.encode_prompt(task.prompt(task.problems[1]))))]
    assert bad[0][1] >= limit
    arith = get_task("arith", fmt=TINY_FORMAT)
    assert long_prompts(arith, arith.sample(20, seed=0), micro.tokenizer, limit) == []
    assert describe(arith.sample(1, seed=0)[0]).startswith("problem 'arith:")


def test_out_of_vocabulary_prefix_ids_are_named(micro):
    V = micro.model.get_input_embeddings().num_embeddings
    with pytest.raises(ValueError, match=rf"prefix_ids: token id {V + 5} at position 2 is outside the model's "
                                         rf"vocabulary \(ids 0..{V - 1}\)"):
        micro.continue_from("Q:1+1\n", [5, 6, V + 5, 7], k=2)
    with pytest.raises(ValueError, match="token id -1 at position 0"):
        micro.continue_from("Q:1+1\n", [-1], k=1)
    with pytest.raises(ValueError, match=rf"prefixes\[1\]: token id {V} at position 1"):
        micro.continue_many(["Q:1\n", "Q:2\n"], [[5], [5, V]], k=1)


def test_logprobs_on_an_empty_batch_is_a_clear_error(micro):
    for shape in ((0, 5), (2, 0)):
        ids = torch.zeros(shape, dtype=torch.long)
        with pytest.raises(ValueError, match="empty batch"):
            micro.logprobs(ids, torch.ones_like(ids))
    ids = torch.tensor([[3, 4, 5]])
    assert micro.logprobs(ids, torch.ones_like(ids)).shape == (1, 2)
