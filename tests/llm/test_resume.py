"""Runs that lose nothing and refuse what would corrupt them (``docs/llm.md``, "Reliability"): resume takes
the saved config and refuses changes of meaning; damaged checkpoints and torn metrics are repaired from the
newest intact state; two runs cannot share a directory; a long prompt, a full disk or a diverging run ends
in a clear message. The kill -9 and concurrency tests run real processes under a deadline."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from llm import checkpoint as C
from llm import train as T
from llm.config import parse_args

from ._trainkit import Killed, dies_after_step3, even_task, save_micro, strip_times

pytest.importorskip("llm.tiny")
ROOT = Path(__file__).resolve().parents[2]
DRIVER = str(Path(__file__).with_name("_even_main.py"))
NEW_FIELDS = ("skipped_steps", "diverging")


@pytest.fixture
def even_cli(monkeypatch):
    """``--task even`` for in-process ``llm.train.main`` calls (as tests/llm/_even_main.py does for processes)."""
    import llm.tasks
    real = llm.tasks.get_task
    monkeypatch.setattr(llm.tasks, "get_task", lambda name, **kw: even_task() if name == "even" else real(name, **kw))


def args(model_dir, out, *extra, steps=4, method="srpo"):
    """The flags of ``_trainkit.micro_cfg`` (plus ``--task even``) for command-line runs."""
    return ["--model", model_dir, "--task", "even", "--method", method, "--steps", str(steps), "--prompts_per_step",
            "4", "--max_thoughts", "3", "--max_thought_tokens", "40", "--max_new_tokens", "40", "--eval_every", "2",
            "--eval_size", "8", "--out_dir", str(out), "--train_size", "32", "--micro_batch_size", "12",
            "--loc_max_new_tokens", "8", "--progress", "false", "--lr", "1e-2", "--save_every", "2",
            "--num_threads", "1", *extra]


def read(out) -> list[dict]:
    return [json.loads(x) for x in (Path(out) / "metrics.jsonl").read_text().splitlines() if x.strip()]


def history(out) -> list[dict]:
    return [json.loads(x) for x in (Path(out) / "config_history.jsonl").read_text().splitlines()]


def same_weights(a: Path, b: Path) -> None:
    sa, sb = C.load_checkpoint(a)["model"], C.load_checkpoint(b)["model"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def reference(model_dir, tmp_path, *extra, steps=4, method="srpo") -> Path:
    out = tmp_path / "ref"
    T.train(parse_args(args(model_dir, out, *extra, steps=steps, method=method)), task=even_task())
    return out


def run_proc(argv, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, DRIVER, *argv], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def wait_for(cond, proc: subprocess.Popen, limit_s: float, what: str) -> None:
    deadline = time.monotonic() + limit_s
    while not cond():
        if proc.poll() is not None:
            pytest.fail(f"the run exited (rc {proc.returncode}) before {what}: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {what} within {limit_s:.0f} s")
        time.sleep(0.05)


def flip(p: Path, n: int = 200) -> None:
    b = bytearray(p.read_bytes())
    for i in range(len(b) // 2, len(b) // 2 + n):
        b[i] ^= 0xFF
    p.write_bytes(bytes(b))


_Killed, _DiesAfterStep3 = Killed, dies_after_step3()


class _DiesAfterSave2(T.Trainer):
    """Killed right after the step-2 checkpoint."""

    def save(self):
        path = super().save()
        if self.step == 2:
            raise _Killed
        return path


# ----------------------------------------------------------------------------- rows 1, 4, 5 with real processes
def test_kill9_then_readme_resume_falls_back_over_damage_and_matches_the_uninterrupted_run(model_dir, tmp_path):
    """Run A is killed with -9 right after step_00000004 is complete; then 200 bytes of that checkpoint are
    flipped and a torn line is appended to metrics.jsonl. ``--resume --out_dir A`` (the README's form, no other
    flag) takes A's saved config, names the corrupt checkpoint and the torn line, restarts from step 2, and ends
    with the metrics and final weights of the uninterrupted run."""
    ref = reference(model_dir, tmp_path, steps=6)
    out = tmp_path / "a"
    p = run_proc(args(model_dir, out, steps=6))
    wait_for(lambda: (out / "checkpoints" / "step_00000004.json").exists(), p, 300, "checkpoint 4")
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)
    flip(out / "checkpoints" / "step_00000004.pt")
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "step": 5, "reward_me')
    saved = (out / "config.yaml").read_text()
    r = subprocess.run([sys.executable, DRIVER, "--resume", "--out_dir", str(out)], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "step_00000004.pt" in r.stderr and "sha256" in r.stderr and "torn last line" in r.stderr
    assert strip_times(read(out)) == strip_times(read(ref))
    same_weights(ref / "checkpoints" / "step_00000006.pt", out / "checkpoints" / "step_00000006.pt")
    assert (out / "config.yaml").read_text() == saved.replace("resume: false", "resume: true")
    h = history(out)[-1]
    assert h["event"] == "resume" and h["step"] == 2 and h["checkpoint"] == "step_00000002.pt"
    assert h["skipped_checkpoints"][0]["name"] == "step_00000004.pt" and "changes" not in h
    assert (out / "checkpoints" / "step_00000004.aside-1.pt").is_file()  # the damaged file is kept aside


# ----------------------------------------------------------------------------- rows 1, 2: the saved config
def test_resume_flags_that_change_the_run_are_refused_and_nothing_is_written(model_dir, tmp_path, even_cli, capsys):
    out = tmp_path / "r"
    assert T.main(args(model_dir, out, steps=2)) == 0
    before = {f: (out / f).read_bytes() for f in ("config.yaml", "metrics.jsonl", "config_history.jsonl")}
    assert T.main(["--resume", "--out_dir", str(out), "--method", "grpo", "--lr", "1e-3", "--progress", "true"]) == 2
    err = capsys.readouterr().err
    assert "method: 'srpo' -> 'grpo'" in err and "optim.lr: 0.01 -> 0.001" in err and "--allow_config_change" in err
    assert "progress" not in err.split("Free to change")[0]  # a harmless flag is not a refusal
    assert {f: (out / f).read_bytes() for f in before} == before  # nothing recorded that did not happen


def test_resume_without_flags_continues_with_the_saved_config(model_dir, tmp_path, even_cli):
    ref = reference(model_dir, tmp_path, "--seed", "3", steps=4)
    out = tmp_path / "r"
    with pytest.raises(_Killed):  # dies right after the step-2 checkpoint
        _DiesAfterSave2(parse_args(args(model_dir, out, "--seed", "3", steps=4)), task=even_task()).run()
    assert T.main(["--resume", "--out_dir", str(out), "--progress", "false", "--num_threads", "1"]) == 0
    assert strip_times(read(out)) == strip_times(read(ref))
    cfg = parse_args(["--config", str(out / "config.yaml")])
    assert (cfg.steps, cfg.seed, cfg.prompts_per_step, cfg.task) == (4, 3, 4, "even")


def test_allow_config_change_applies_logs_and_records_each_change(model_dir, tmp_path, even_cli):
    out = tmp_path / "r"
    assert T.main(args(model_dir, out, steps=2)) == 0
    with pytest.warns(UserWarning, match=r"allow_config_change") as rec:
        assert T.main(["--resume", "--out_dir", str(out), "--method", "grpo", "--lr", "1e-3", "--steps", "3",
                       "--allow_config_change"]) == 0
    said = [str(w.message) for w in rec]
    assert any("optim.lr 0.01 -> 0.001" in m for m in said) and any("'srpo' -> 'grpo'" in m for m in said), said
    recs = read(out)
    change = [r for r in recs if r["kind"] == "config_change"]
    assert change == [{"kind": "config_change", "step": 2, "changes": {"method": ["srpo", "grpo"],
                                                                         "optim.lr": [0.01, 0.001]}}]
    step3 = [r for r in recs if r["kind"] == "train" and r["step"] == 3][0]
    assert step3["method"] == "grpo" and step3["lr"] == pytest.approx(1e-3)  # the optimizer got the new lr
    h = history(out)[-1]
    assert h["changes"] == {"method": ["srpo", "grpo"], "optim.lr": [0.01, 0.001], "steps": [2, 3]}
    assert sorted(h["overridden"]) == ["method", "optim.lr"]
    cfg = parse_args(["--config", str(out / "config.yaml")])
    assert (cfg.method, cfg.rollout.method, cfg.optim.lr, cfg.steps) == ("grpo", "grpo", 1e-3, 3)


def test_steps_may_grow_under_a_constant_schedule_only(model_dir, tmp_path, even_cli, capsys):
    """Decision (docs/llm.md "Reliability"): more steps change nothing already done when the lr is constant
    (with or without warm-up); under linear/cosine decay the total sets every step's lr, so it needs
    --allow_config_change, and then the schedule continues at the restored position with the new total."""
    ref = reference(model_dir, tmp_path, steps=6)
    out = tmp_path / "c"
    assert T.main(args(model_dir, out, steps=4)) == 0
    assert T.main(["--resume", "--out_dir", str(out), "--steps", "6"]) == 0
    assert strip_times(read(out)) == strip_times(read(ref))  # 4 then 2 more steps = 6 steps
    with pytest.raises(ValueError, match="below the step the run restarts from"):
        T.Trainer(parse_args(args(model_dir, out, "--resume", steps=5)), task=even_task())
    lin = tmp_path / "lin"
    assert T.main(args(model_dir, lin, "--schedule", "linear", steps=4)) == 0
    assert T.main(["--resume", "--out_dir", str(lin), "--steps", "8"]) == 2
    assert "steps: 4 -> 8" in capsys.readouterr().err
    with pytest.warns(UserWarning, match=r"steps 4 -> 8"):
        assert T.main(["--resume", "--out_dir", str(lin), "--steps", "8", "--allow_config_change"]) == 0
    step5 = [r for r in read(lin) if r["kind"] == "train" and r["step"] == 5][0]
    assert step5["lr"] == pytest.approx(1e-2 * (8 - 5) / 8)  # linear decay to 0 at step 8, after 5 updates


# ----------------------------------------------------------------------------- rows 3, 4: damaged checkpoints
def _truncate(p):
    p.write_bytes(p.read_bytes()[:1000])


def _empty(p):
    p.write_bytes(b"")


@pytest.mark.parametrize("damage, why, extra", [
    (_truncate, "truncated", ()), (_empty, "truncated", ()), (flip, "sha256", ()),
    (flip, "sha256", ("--lora.enabled", "true", "--lora.r", "4", "--lora.alpha", "8")),
])
def test_damaged_newest_checkpoint_falls_back_to_the_intact_one(model_dir, tmp_path, damage, why, extra):
    ref = reference(model_dir, tmp_path, *extra)
    out = tmp_path / "d"
    shutil.copytree(ref, out)
    (out / "run.lock").unlink()
    damage(out / "checkpoints" / "step_00000004.pt")
    with pytest.warns(UserWarning, match=f"skipped a corrupt checkpoint: step_00000004.pt.*{why}"):
        T.train(parse_args(args(model_dir, out, *extra, "--resume")), task=even_task())
    assert strip_times(read(out)) == strip_times(read(ref))
    same_weights(ref / "checkpoints" / "step_00000004.pt", out / "checkpoints" / "step_00000004.pt")


# ----------------------------------------------------------------------------- rows 5, 6: metrics


def test_torn_metrics_line_is_dropped_with_a_warning_naming_the_file(model_dir, tmp_path):
    ref = reference(model_dir, tmp_path)
    out = tmp_path / "t"
    with pytest.raises(_Killed):
        _DiesAfterStep3(parse_args(args(model_dir, out)), task=even_task()).run()
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"kind": "eval", "step": 4, "eval_pass@1": 0.')
    with pytest.warns(UserWarning, match=r"metrics.jsonl: dropped a torn last line"):
        T.train(parse_args(args(model_dir, out, "--resume")), task=even_task())
    assert strip_times(read(out)) == strip_times(read(ref))


def test_kill9_without_a_checkpoint_then_resume_starts_clean_and_keeps_the_old_metrics_aside(model_dir, tmp_path):
    """Row 6: a run with --save_every 0 killed with -9 after step 3; --resume finds no checkpoint, moves the old
    metrics aside (not deleted) and restarts at step 0 with the saved config: every step logged once."""
    ref = reference(model_dir, tmp_path, "--save_every", "0")
    out = tmp_path / "n"
    p = run_proc(args(model_dir, out, "--save_every", "0"))
    wait_for(lambda: '"kind": "train", "step": 3' in ((out / "metrics.jsonl").read_text()
                                                       if (out / "metrics.jsonl").exists() else ""), p, 300, "step 3")
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)
    assert not C.list_checkpoints(out / "checkpoints")
    old = (out / "metrics.jsonl").read_text()
    r = subprocess.run([sys.executable, DRIVER, "--resume", "--out_dir", str(out)], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "no intact checkpoint" in r.stderr and "moved aside to metrics.aside-1.jsonl" in r.stderr
    recs = read(out)
    assert [(x["kind"], x["step"]) for x in recs] == [(x["kind"], x["step"]) for x in read(ref)]  # once each
    assert strip_times(recs) == strip_times(read(ref))
    assert (out / "metrics.aside-1.jsonl").read_text() == old
    assert history(out)[-1]["event"] == "restart" and "moved aside" in history(out)[-1]["metrics"]


def test_a_fresh_run_moves_old_metrics_aside(model_dir, tmp_path):
    out = tmp_path / "f"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"kind": "train", "step": 1}\n')
    with pytest.warns(UserWarning, match="moved aside"):
        T.train(parse_args(args(model_dir, out, "--eval_every", "0", steps=1)), task=even_task())
    assert (out / "metrics.aside-1.jsonl").read_text() == '{"kind": "train", "step": 1}\n'


# ----------------------------------------------------------------------------- row 7: two runs, one directory
def test_second_run_on_a_busy_directory_is_refused_naming_the_holder(model_dir, tmp_path, even_cli, capsys):
    out = tmp_path / "busy"
    a = run_proc(args(model_dir, out, "--seed", "5", steps=4))
    wait_for(lambda: (out / "config.yaml").exists(), a, 300, "run A's start")
    assert T.main(args(model_dir, out, "--seed", "9", steps=4)) == 2  # run B, same directory
    err = capsys.readouterr().err
    assert f"is in use by another llm.train run (pid {a.pid}" in err
    assert T.main(args(model_dir, out, "--seed", "5", "--resume", steps=4)) == 2  # also when resuming
    _, a_err = a.communicate(timeout=300)
    assert a.returncode == 0, a_err[-2000:]
    assert [r["step"] for r in read(out) if r["kind"] == "train"] == [1, 2, 3, 4]
    assert parse_args(["--config", str(out / "config.yaml")]).seed == 5
    assert all(C.load_checkpoint(p)["config"]["seed"] == 5 for p in C.list_checkpoints(out / "checkpoints"))
    assert T.main(args(model_dir, out, "--resume", "--seed", "5", steps=4)) == 0  # released at exit


# ----------------------------------------------------------------------------- row 11 and the minor items
def _jsonl(tmp_path, long_row: int) -> str:
    rows = [{"question": f"{i}+1", "answer": str(i + 1)} for i in range(40)]
    rows[long_row]["question"] = "9+" * 200 + "1"  # 401 characters: more than the micro model's 256 positions
    p = tmp_path / "data.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(p)


@pytest.mark.parametrize("long_row", [3, 7])
def test_a_prompt_longer_than_the_context_is_named_at_start(model_dir, tmp_path, long_row, capsys):
    data = _jsonl(tmp_path, long_row)
    base = args(model_dir, tmp_path / "x", steps=1, method="grpo")
    base[base.index("even")] = data
    assert T.main([*base, "--train_size", "64", "--eval_size", "16"]) == 2
    err = capsys.readouterr().err
    assert f"data.jsonl row {long_row} (line {long_row + 1}): " in err and "--long_prompts skip" in err
    with pytest.warns(UserWarning, match=rf"dropped 1 problem\(s\).*row {long_row} \(line {long_row + 1}\)"):
        assert T.main([*base, "--train_size", "64", "--eval_size", "16", "--long_prompts", "skip",
                       "--out_dir", str(tmp_path / "y")]) == 0
    assert history(tmp_path / "y")[0]["long_prompts_dropped"][0].startswith(f"data.jsonl row {long_row}")


def test_full_disk_at_a_checkpoint_stops_with_no_space_and_keeps_the_previous(model_dir, tmp_path, monkeypatch,
                                                                              even_cli, capsys):
    import errno
    real = C._HashingWriter.write
    writes = {"n": 0}

    def full_at_second_checkpoint(self, b):
        if writes["n"] >= 1 and self.bytes > 1000:
            self.error = OSError(errno.ENOSPC, "No space left on device")
            raise self.error
        return real(self, b)

    real_save = C.save_checkpoint

    def counting_save(*a, **kw):
        try:
            return real_save(*a, **kw)
        finally:
            writes["n"] += 1

    monkeypatch.setattr(C._HashingWriter, "write", full_at_second_checkpoint)
    monkeypatch.setattr(C, "save_checkpoint", counting_save)
    out = tmp_path / "full"
    assert T.main(args(model_dir, out)) == 1
    err = capsys.readouterr().err
    assert "no space left on device" in err and "step_00000002.pt is kept" in err and "enforce fail" not in err
    assert [p.name for p in C.list_checkpoints(out / "checkpoints")] == ["step_00000002.pt"]
    C.load_checkpoint(out / "checkpoints" / "step_00000002.pt")  # intact
    assert not list((out / "checkpoints").glob(".tmp-*"))


def _nan_from_step(first: int, monkeypatch):
    real = T.build_rollouts

    def poisoned(*a, **kw):
        rb = real(*a, **kw)
        if kw["prompt_ids"][0] >= 4 * (first - 1):
            rb.advantages[:] = float("nan")
        return rb

    monkeypatch.setattr(T, "build_rollouts", poisoned)


def test_a_diverging_run_is_flagged_and_stopped_without_a_poisoned_checkpoint(model_dir, tmp_path, monkeypatch,
                                                                              even_cli, capsys):
    _nan_from_step(2, monkeypatch)
    out = tmp_path / "div"
    with pytest.warns(UserWarning, match="diverging"):
        assert T.main(args(model_dir, out, "--max_skipped_steps", "3", "--save_every", "1", steps=10)) == 3
    assert "training diverged: 3 consecutive steps (2-4)" in capsys.readouterr().err
    recs = read(out)
    train = [r for r in recs if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert [(r["loss"] is None, r["diverging"], r["skipped_steps"]) for r in train] == [
        (False, False, 0), (True, True, 1), (True, True, 2), (True, True, 3)]
    assert recs[-1]["kind"] == "stopped" and recs[-1]["reason"] == "diverged"
    assert [p.name for p in C.list_checkpoints(out / "checkpoints")][-1] == "step_00000003.pt"  # none at the stop
    for p in C.list_checkpoints(out / "checkpoints"):
        st = C.load_checkpoint(p)
        assert not C.nonfinite_tensors(st["model"]) and not C.nonfinite_tensors(st["optimizer"])
    assert history(out)[-1]["event"] == "stopped"
    assert not (out / "final").exists()


def test_skipped_step_for_a_non_finite_gradient_logs_null_loss_and_counts(model_dir, tmp_path):
    tr = T.Trainer(parse_args(args(model_dir, tmp_path / "g", "--eval_every", "0", steps=3)), task=even_task())
    p = next(p for p in tr.policy.model.parameters() if p.requires_grad)
    hook = {"on": False}
    p.register_hook(lambda g: g * float("inf") if hook["on"] else g)
    real = tr.update

    def update(rb):
        hook["on"] = tr.step == 1  # the update of step 2
        return real(rb)

    tr.update = update
    with pytest.warns(UserWarning, match="step 2: diverging: non-finite gradient"):
        recs = tr.run()
    train = [r for r in recs if r["kind"] == "train"]
    assert train[1]["skip_reason"] == "non-finite gradient" and train[1]["loss"] is None
    assert [r["skipped_steps"] for r in train] == [0, 1, 1] and train[2]["loss"] is not None


def test_a_lock_is_released_when_start_up_fails(model_dir, tmp_path):
    out = tmp_path / "e"
    with pytest.raises(ValueError, match="--long_prompts|does not exist|task"):
        T.Trainer(parse_args(args(model_dir, out, "--task", "nonsense.jsonl")))
    from llm.rundir import RunLock
    with RunLock(out) as lock:
        assert lock.held


# ----------------------------------------------------------------------------- FSDP's checkpoints (row 3)
@pytest.mark.slow
def test_fsdp_checkpoint_damage_falls_back_under_two_processes(tmp_path):
    """Two gloo processes with FSDP2 (the full state dicts gathered to rank 0, the same file format): the
    truncated newest checkpoint is skipped by name and the run reproduces its uninterrupted metrics."""
    from .test_distributed import _read, _spawn_fsdp
    model = save_micro(tmp_path)
    out = tmp_path / "fsdp"
    _spawn_fsdp(model, out)
    ref = _read(out / "metrics.jsonl")
    _truncate(out / "checkpoints" / "step_00000004.pt")
    _spawn_fsdp(model, out, "--resume")
    assert strip_times(_read(out / "metrics.jsonl")) == strip_times(ref)
    assert history(out)[-1]["skipped_checkpoints"][0]["name"] == "step_00000004.pt"
    assert history(out)[-1]["checkpoint"] == "step_00000002.pt"
