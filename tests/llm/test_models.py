"""Model resolution in one place: path detection, dtype names, settings saved beside a model."""
import pytest
import torch

from llm.hub import is_path_like, resolve_dtype, task_settings
from llm.models import check_model_arg, load_policy, resolve_model


@pytest.mark.parametrize("name, path", [
    ("Qwen/Qwen2.5-0.5B", False), ("gpt2", False), ("./model", True), ("/abs/dir", True), ("~/m", True),
    ("runs/a/b", True), ("dir/", True), ("a//b", True), ("tiny", False),
])
def test_is_path_like(name, path):
    assert is_path_like(name) is path


def test_existing_relative_dir_is_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mymodel").mkdir()
    assert is_path_like("mymodel") and resolve_model("mymodel") == "mymodel"
    with pytest.raises(ValueError, match="does not exist"):
        check_model_arg("org/a/b")  # config check and resolve_model agree on what a path is
    with pytest.raises(ValueError, match="does not exist"):
        resolve_model("org/a/b")


def test_resolve_dtype():
    assert resolve_dtype(None) is None and resolve_dtype(torch.float16) is torch.float16
    assert resolve_dtype("auto", "cpu") is torch.float32 and resolve_dtype("auto", "cuda:0") is torch.bfloat16
    assert resolve_dtype("bf16") is torch.bfloat16
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("float8")


def test_task_settings_and_get_task(micro, tmp_path):
    meta = {"task": {"name": "arith", "max_terms": 6}}
    assert task_settings(meta, "arith") == {"max_terms": 6} and task_settings(meta, None) == {"max_terms": 6}
    assert task_settings(meta, "rg:chain_sum") == {} and task_settings({}, "arith") == {}
    d = micro.save_pretrained(tmp_path / "m", task={"name": "arith", "max_terms": 6})
    pol = load_policy(str(d))
    assert pol.get_task("arith").max_terms == 6 and pol.get_task().max_terms == 6


def test_model_fingerprint_follows_the_weights(micro, tmp_path):
    """Same files -> same fingerprint; other weights in the same directory -> another; a hub name is
    its own fingerprint (``llm.models.model_fingerprint``)."""
    from llm.models import model_fingerprint

    micro.save_pretrained(tmp_path / "m")
    fp = model_fingerprint(tmp_path / "m")
    assert len(fp) == 16 and model_fingerprint(str(tmp_path / "m")) == fp
    with torch.no_grad():
        next(micro.model.parameters()).add_(1e-3)
    micro.save_pretrained(tmp_path / "m")
    assert model_fingerprint(tmp_path / "m") != fp
    assert model_fingerprint("org/some-model") == "org/some-model"


def test_cached_ics_runs_are_keyed_by_model(tmp_path):
    from llm.ics import ICSConfig, read_summary, write_run

    cfg = ICSConfig()
    summary = {"n": 0}
    write_run(tmp_path, "run", cfg, [], summary, model="aaa")
    assert read_summary(tmp_path, "run", cfg, 0, model="aaa")["model"] == "aaa"
    assert read_summary(tmp_path, "run", cfg, 0, model="bbb") is None  # another model: redo
    assert read_summary(tmp_path, "run", cfg, 0) is not None           # no model given: config only
