"""The prepared device check: the training entry point on a GPU, in one command that fits one lease.

    python experiments/gpu_check.py --out $OUT                          # on a GPU machine (about 5 minutes)
    python experiments/gpu_check.py --out /tmp/gc --device cpu --size micro --skip_speed   # the same runs on CPU

Run it from the repository root with the package importable (``pip install -e .``, or
``PYTHONPATH=.``). The training CLI needs ``tyro``; a GPU machine without it (and without a package
index) gets it from ``wheelhouse/``: run ``make wheelhouse`` here and carry that folder along.

Nothing is downloaded: the model is a random-init Llama with the tiny default's character tokenizer
(``--size``: micro 0.1M, small 26M, medium 205M parameters), saved as an ordinary HF directory, on
the built-in arith task. Each check is a ``torchrun`` of ``python -m llm.train --config
configs/gpu.yaml`` (the ``--gpu`` profile: LoRA r=64 on all linear layers, bfloat16, paper settings;
here SRPO with 2 prompts x 8 rollouts and short thoughts) with a deadline, so a rank stuck in a collective fails the check instead of
hanging the lease:

* ``single``: one process, 2 steps with a checkpoint each step, then ``--resume`` to step 3.
* ``ddp1`` / ``fsdp1``: the same with ``CREDIT_RESETS_DIST=1``: a one-process group (NCCL on a GPU,
  gloo on CPU), so DDP and FSDP2 (sharding, ``full_params`` around generation, the FSDP checkpoint)
  run on a machine with one GPU; ``fsdp1`` also resumes.
* ``ddpN`` / ``fsdpN`` (only with ``--nproc N > 1``, one GPU per process): N ranks.
* ``speed`` (unless ``--skip_speed``): ``experiments/bench/train_step.py --skip_trl`` on the device,
  our GRPO and SRPO steps with the tiny default and with the random ``--size`` model.

A check passes when torchrun exits 0, ``metrics.jsonl`` holds a train line for every step, the
checkpoints exist and the last one records the expected process-group backend (none for ``single``). Writes ``--out``/gpu_check.json (per check: command, exit code, seconds, steps
logged, checkpoints, log tail) and prints one line per check; the exit code is 1 if any check failed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / "wheelhouse"
"""Pure-Python wheels of tyro and its dependencies (``make wheelhouse``; git-ignored), installed from here
when the machine lacks tyro: the device machine cannot reach a package index."""

SIZES = {  # Llama width / depth for the random-init model
    "micro": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4),
    "small": dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=8, num_attention_heads=8),
    "medium": dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=16, num_attention_heads=16),
}
TRAIN_ARGS = ["--config", str(ROOT / "configs" / "gpu.yaml"), "--method", "srpo", "--task", "arith", "--prompts_per_step", "2", "--mini_batches", "2", "--eval_every", "0",
              "--save_every", "1", "--rollout.max_thoughts", "4", "--rollout.max_thought_tokens", "32",
              "--rollout.max_new_tokens", "128", "--rollout.loc_max_new_tokens", "32", "--progress", "false"]


def ensure_tyro() -> str:
    """``tyro``'s version, installing it from :data:`WHEELS` (no index) when it is missing."""
    try:
        import tyro
    except ImportError:
        if not WHEELS.is_dir():
            raise SystemExit(f"gpu_check: tyro is not installed and {WHEELS} is missing; run `make wheelhouse` "
                             f"on a machine with a package index and carry {WHEELS.name}/ along") from None
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(WHEELS),
                        "tyro"], check=True)
        import importlib
        importlib.invalidate_caches()
        import tyro
    return tyro.__version__


def make_model(path: Path, size: str) -> tuple[Path, int]:
    """Random-init Llama + the tiny default's tokenizer and format, saved to ``path``; (path, parameters)."""
    from llm.policy import Policy
    from llm.thoughts import TINY_FORMAT
    from llm.tiny import TINY_TASK, build_llama, char_tokenizer

    if size not in SIZES:
        raise ValueError(f"size: expected one of {sorted(SIZES)}, got {size!r}")
    tok = char_tokenizer()
    arch = dict(SIZES[size], num_key_value_heads=SIZES[size]["num_attention_heads"], max_position_embeddings=1024)
    pol = Policy(build_llama(tok, 0, **arch), tok, TINY_FORMAT)
    pol.save_pretrained(path, task={"name": "arith", **TINY_TASK})
    n = sum(p.numel() for p in pol.model.parameters())
    return path, n


def _torchrun(nproc: int, args: list[str], env: dict, log: Path, limit_s: float) -> tuple[int, float]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "llm.train", *args]
    t0 = time.perf_counter()
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        try:
            rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=limit_s).returncode
        except subprocess.TimeoutExpired:
            rc = 124
    return rc, time.perf_counter() - t0


def _train_steps(out_dir: Path) -> list[int]:
    f = out_dir / "metrics.jsonl"
    if not f.is_file():
        return []
    recs = [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
    return [r["step"] for r in recs if r.get("kind") == "train"]


def run_check(name: str, nproc: int, extra: list[str], env_extra: dict, a, model: Path, resume: bool) -> dict:
    out_dir = Path(a.work) / name
    log = Path(a.out) / f"{name}.log"
    env = {**os.environ, **env_extra, "PYTHONUNBUFFERED": "1"}
    dtype = ["--dtype", "float32"] if a.device == "cpu" else []  # gpu.yaml asks for bfloat16
    base = [*TRAIN_ARGS, "--model", str(model), "--device", a.device, *dtype, "--out_dir", str(out_dir), *extra]
    rc, sec = _torchrun(nproc, [*base, "--steps", "2"], env, log, a.limit)
    rec = dict(name=name, nproc=nproc, command=" ".join(["torchrun", "--nproc_per_node", str(nproc), "-m",
                                                          "llm.train", *base, "--steps", "2"]),
               env=env_extra, rc=rc, seconds=round(sec, 1))
    want = [1, 2]
    if resume and rc == 0:
        rc2, sec2 = _torchrun(nproc, [*base, "--steps", "3", "--resume", "true"], env, log, a.limit)
        rec.update(resume_rc=rc2, resume_seconds=round(sec2, 1))
        want = [1, 2, 3]
    steps = _train_steps(out_dir)
    ckpts = sorted(p.name for p in (out_dir / "checkpoints").glob("*.pt")) if (out_dir / "checkpoints").is_dir() else []
    backend = wrapper = None
    if ckpts:  # which path ran: the trainer records its process-group backend and model wrapper
        from llm.checkpoint import load_checkpoint
        st = load_checkpoint(out_dir / "checkpoints" / ckpts[-1])
        backend, wrapper = st.get("backend"), st.get("wrapper")
    want_backend = None if not env_extra and nproc == 1 else ("nccl" if a.device == "cuda" else "gloo")
    rec.update(steps_logged=steps, checkpoints=ckpts, backend=backend, wrapper=wrapper,
               ok=rc == 0 and rec.get("resume_rc", 0) == 0 and steps == want and bool(ckpts)
               and backend == want_backend)
    rec["log_tail"] = log.read_text()[-3000:] if log.is_file() else ""
    return rec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="results folder (gpu_check.json, one log per check)")
    ap.add_argument("--work", default="/tmp/gpu_check", help="scratch folder for models and runs")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--size", default="medium", choices=sorted(SIZES))
    ap.add_argument("--nproc", type=int, default=1, help="also run DDP / FSDP with this many ranks (GPUs)")
    ap.add_argument("--limit", type=float, default=240, help="seconds per torchrun before it counts as hung")
    ap.add_argument("--skip_speed", action="store_true")
    a = ap.parse_args(argv)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    Path(a.work).mkdir(parents=True, exist_ok=True)

    tyro_version = ensure_tyro()
    import torch
    import transformers
    env = dict(python=sys.version.split()[0], torch=torch.__version__, transformers=transformers.__version__,
               tyro=tyro_version,
               cuda=torch.cuda.is_available(), gpus=torch.cuda.device_count(),
               gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    if a.device == "cuda" and not env["cuda"]:
        print("gpu_check: --device cuda but torch sees no GPU; use --device cpu to test the script", file=sys.stderr)
        return 2
    model, n_params = make_model(Path(a.work) / f"model_{a.size}", a.size)
    print(f"gpu_check: {env}; model {a.size} ({n_params / 1e6:.1f}M parameters)", flush=True)

    dist1 = {"CREDIT_RESETS_DIST": "1"}
    plan = [("single", 1, [], {}, True), ("ddp1", 1, [], dist1, False), ("fsdp1", 1, ["--fsdp", "true"], dist1, True)]
    if a.nproc > 1:
        plan += [(f"ddp{a.nproc}", a.nproc, ["--prompts_per_step", str(2 * a.nproc)], {}, False),
                 (f"fsdp{a.nproc}", a.nproc, ["--prompts_per_step", str(2 * a.nproc), "--fsdp", "true"], {}, True)]
    results = dict(env=env, size=a.size, n_params=n_params, checks=[], speed=[])
    for name, nproc, extra, env_extra, resume in plan:
        rec = run_check(name, nproc, extra, env_extra, a, model, resume)
        results["checks"].append(rec)
        print(f"  {name}: {'ok' if rec['ok'] else 'FAILED'} (rc {rec['rc']}, {rec['seconds']} s, steps "
              f"{rec['steps_logged']}, checkpoints {rec['checkpoints']}, backend {rec['backend']}, "
              f"model {rec['wrapper']})", flush=True)
        (Path(a.out) / "gpu_check.json").write_text(json.dumps(results, indent=1))
    if not a.skip_speed:
        for label, m in (("tiny", "tiny"), (a.size, str(model))):
            dest = Path(a.out) / f"train_step_{label}.json"
            cmd = [sys.executable, str(ROOT / "experiments" / "bench" / "train_step.py"), "--skip_trl", "--model", m,
                   "--rounds", "2", "--steps", "3", "--threads", "1", "--out", str(dest)]
            t0 = time.perf_counter()
            p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=a.limit)
            rec = dict(model=label, rc=p.returncode, seconds=round(time.perf_counter() - t0, 1),
                       tail=(p.stdout + p.stderr)[-1500:])
            if dest.is_file():
                rec["summary"] = json.loads(dest.read_text()).get("summary")
            results["speed"].append(rec)
            print(f"  speed {label}: rc {p.returncode}\n{p.stdout[-600:]}", flush=True)
            (Path(a.out) / "gpu_check.json").write_text(json.dumps(results, indent=1))
    bad = [c["name"] for c in results["checks"] if not c["ok"]] + [s["model"] for s in results["speed"] if s["rc"]]
    print("gpu_check: all checks passed" if not bad else f"gpu_check: FAILED {bad}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
