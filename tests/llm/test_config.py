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


# ----------------------------------------------------------------------------- YAML typed by field (rows 8-10)
def test_yaml_numbers_are_converted_by_the_field_type(tmp_path):
    """PyYAML reads 1e-4 (no dot) as a string; the field's type decides."""
    p = tmp_path / "c.yaml"
    p.write_text("optim: {lr: 1e-4, betas: ['0.9', 0.95]}\nsteps: 2.0e1\nprogress: 'false'\nrollout:\n  top_p: '0.5'\n")
    cfg = C.load_yaml(p)
    assert cfg.optim.lr == 1e-4 and isinstance(cfg.optim.lr, float) and cfg.optim.betas == (0.9, 0.95)
    assert cfg.steps == 20 and isinstance(cfg.steps, int) and cfg.progress is False and cfg.rollout.top_p == 0.5


@pytest.mark.parametrize("text, match", [
    ("method: srpo\noptim: {lr: [1,\n", r"c\.yaml:3: invalid YAML"),
    ("method: grpo\nsteps: abc\n", r"c\.yaml:2: steps must be an integer, got 'abc'"),
    ("- method\n- grpo\n", r"c\.yaml:1: a config file must be a mapping"),
    ("method: grpo\noptim: 5\n", r"c\.yaml:2: optim must be a mapping of optim fields, got 5"),
    ("steps: 3\noptim:\n  lr: x\n", r"c\.yaml:3: optim.lr must be a number, got 'x'"),
    ("optim:\n  weight_decay: 0.1\n  lr: -1\n", r"c\.yaml:3: optim.lr must be > 0"),
    ("rollout:\n  top_p: 0.5\n  n_fresh: 7\n", r"c\.yaml:3: budget too small"),
    ("steps: 3\nsteps: 4\n", r"c\.yaml:2: steps is given twice"),
    ("steps: 2.5\n", r"c\.yaml:1: steps must be an integer, got 2.5"),
    ("loss:\n  beta: .inf\n", r"c\.yaml:2: loss.beta must be a finite number"),
    ("optim: {lr: nan}\n", r"c\.yaml:1: optim.lr must be a finite number"),
    ("lora: {enabled: maybe}\n", r"c\.yaml:1: lora.enabled must be true or false"),
    ("method: grpo\nrollout: {method: srpo}\n", r"c\.yaml:2: rollout.method follows method"),
    ("rollout:\n  max_new_tokens: null\n  temperature: null\n", r"c\.yaml:3: rollout.temperature must not be null"),
])
def test_config_file_errors_name_file_line_and_field(tmp_path, text, match):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ValueError, match=match) as e:
        C.parse_args(["--config", str(p)])
    assert "\n" not in str(e.value)


def _float_fields():
    from llm.cli import leaves, unwrap_optional
    return [n for n, h in leaves(C.TrainConfig).items() if unwrap_optional(h)[1] is float]


@pytest.mark.parametrize("name", _float_fields())
@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_non_finite_values_are_refused_for_every_float_field(name, value):
    with pytest.raises(ValueError, match=rf"{name} must be a finite number"):
        C.parse_args([f"--{name}", value])


def test_non_finite_betas_refused():
    with pytest.raises(ValueError, match="finite"):
        C.parse_args(["--betas", "0.9,nan"])
    with pytest.raises(ValueError, match="optim.lr must be a finite number"):
        C.OptimConfig(lr=float("inf"))


def test_command_line_request_counts_the_config_file_fields(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("method: grpo\noptim: {lr: 1.0e-4}\n")
    cfg, given = C.command_line_request(["--config", str(p), "--steps", "3"])
    assert given == {"method", "rollout.method", "optim.lr", "steps"} and cfg.method == "grpo"
    assert C.parse_command_line(["--config", str(p), "--steps", "3"])[1] == {"steps"}


def test_new_fields_have_checked_values():
    with pytest.raises(ValueError, match="long_prompts must be one of"):
        C.parse_args(["--long_prompts", "trim"])
    with pytest.raises(ValueError, match="max_skipped_steps must be >= 0"):
        C.parse_args(["--max_skipped_steps", "-1"])
    cfg = C.TrainConfig()
    assert (cfg.max_skipped_steps, cfg.long_prompts, cfg.allow_config_change) == (5, "fail", False)
