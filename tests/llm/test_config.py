"""Config: YAML + CLI precedence, validation with fix-it messages before any model is loaded."""
import pytest
import yaml

from llm import config as C


def test_defaults_are_valid_and_tiny():
    cfg = C.TrainConfig()
    assert cfg.model == "tiny" and cfg.task == "arith" and cfg.method == "srpo"
    assert cfg.rollout.method == "srpo" and cfg.rollout.continuations_per_reset == 4
    assert cfg.samples_per_step == cfg.prompts_per_step * 8


def test_cli_overrides_and_types():
    cfg = C.parse_args(["--method", "grpo", "--temperature", "1.0", "--loss.kind", "ppo", "--loss.inner_epochs", "2",
                        "--resume", "--betas", "0.9,0.95", "--max_new_tokens", "none", "--lora.enabled", "true",
                        "--target_modules", "q_proj,v_proj", "--steps", "7"])
    assert cfg.method == "grpo" and cfg.rollout.method == "grpo"
    assert cfg.rollout.temperature == 1.0 and isinstance(cfg.steps, int) and cfg.steps == 7
    assert cfg.loss.kind == "ppo" and cfg.loss.inner_epochs == 2 and cfg.resume is True
    assert cfg.optim.betas == (0.9, 0.95) and cfg.rollout.max_new_tokens is None
    assert cfg.lora.enabled and cfg.lora.targets == ["q_proj", "v_proj"]


def test_yaml_then_cli(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"method": "rrpo", "steps": 3, "optim": {"lr": 5e-5}, "rollout": {"top_p": 0.5}}))
    cfg = C.parse_args(["--config", str(p), "--top_p", "0.9"])
    assert cfg.method == "rrpo" and cfg.rollout.method == "rrpo" and cfg.steps == 3
    assert cfg.optim.lr == 5e-5 and cfg.rollout.top_p == 0.9
    # round trip through save_yaml
    cfg.save_yaml(tmp_path / "out.yaml")
    assert C.load_yaml(tmp_path / "out.yaml") == cfg


@pytest.mark.parametrize("args, match", [
    (["--method", "ppo"], "method must be one of"),
    (["--loss.kind", "grpo"], "loss.kind must be one of"),
    (["--agg", "mean"], "loss.agg"),
    (["--n_fresh", "4", "--rollouts_per_prompt", "5"], "budget too small for a reset group"),
    (["--rollouts_per_prompt", "9", "--n_resets", "2"], "group size does not divide"),
    (["--n_fresh", "1"], "n_fresh must be >= 2"),
    (["--max_tries", "4"], "max_tries"),
    (["--top_p", "0"], "top_p"),
    (["--lr", "-1"], "optim.lr"),
    (["--steps", "abc"], "--steps expects int"),
    (["--resume", "maybe"], "true/false"),
    (["--loss.inner_epochs", "3"], "inner_epochs > 1"),
    (["--micro_batch_tokens", "-1"], "micro_batch_tokens"),
    (["--rollouts_per_prompt", "1", "--method", "grpo"], ">= 2"),
])
def test_bad_values_have_fix_it_messages(args, match):
    with pytest.raises(ValueError, match=match):
        C.parse_args(args)


def test_grpo_ignores_reset_budget():
    cfg = C.parse_args(["--method", "grpo", "--rollouts_per_prompt", "5"])  # 5 - 4 = 1 would be bad for srpo
    assert cfg.samples_per_step == cfg.prompts_per_step * 5


def test_unknown_yaml_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("optim: {learning_rate: 0.1}\n")
    with pytest.raises(ValueError, match="unknown key.*learning_rate.*valid keys"):
        C.parse_args(["--config", str(p)])
    with pytest.raises(ValueError, match="not found"):
        C.parse_args(["--config", str(tmp_path / "none.yaml")])


def test_startup_validation_without_loading_a_model(tmp_path):

    cfg = C.parse_args(["--model", str(tmp_path / "missing")])
    with pytest.raises(ValueError, match="does not exist"):
        C.validate_startup(cfg)
    (tmp_path / "notamodel").mkdir()
    with pytest.raises(ValueError, match="config.json"):
        C.validate_startup(C.parse_args(["--model", str(tmp_path / "notamodel")]))
    with pytest.raises(ValueError, match="nothing is downloaded"):
        C.validate_startup(C.parse_args(["--model", "nonexistent-org/nonexistent-model-xyz"]))
    with pytest.raises(ValueError, match="task"):
        C.validate_startup(C.parse_args(["--task", "nonsense"]))
    with pytest.raises(ValueError, match="divisible by the number of processes"):
        C.validate_startup(C.parse_args(["--prompts_per_step", "3"]), world_size=2)
    p = tmp_path / "p.jsonl"
    p.write_text('{"question": "1+1", "answer": "2"}\n' * 4)
    with pytest.raises(ValueError, match="step checker"):
        C.validate_startup(C.parse_args(["--method", "oracle", "--task", str(p)]))
    task = C.validate_startup(C.parse_args(["--method", "oracle"]))  # arith has a step checker
    assert task.has_step_checker


def test_shipped_yaml_configs_load():
    from pathlib import Path
    files = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
    assert files
    for f in files:
        cfg = C.load_yaml(f)
        assert cfg.rollout.method == cfg.method
    paper = C.load_yaml(Path(__file__).resolve().parents[2] / "configs" / "paper.yaml")
    assert (paper.optim.lr, paper.optim.weight_decay, paper.optim.grad_clip) == (5e-5, 0.01, 1.0)
    assert paper.lora.enabled and paper.lora.r == 64 and paper.lora.alpha == 64
    assert paper.rollout.temperature == 0.7 and paper.rollout.top_p == 0.95 and paper.prompts_per_step == 32
