"""Command lines from the config dataclasses (llm.cli, tyro): --help documents every field, old flag
forms keep working, explicit fields are reported; and the llm package has no import cycle."""
from __future__ import annotations

import ast
import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llm import cli
from llm.config import TrainConfig, parse_command_line
from llm.ics import ICSArgs
from llm.ics import parse_command_line as ics_command_line

ROOT = Path(__file__).resolve().parents[2]


def field_docs(cls) -> dict[str, str]:
    """Docstring under each dataclass field (the convention of this package), through the MRO."""
    out: dict[str, str] = {}
    for c in reversed(cls.__mro__):
        if c is object or not hasattr(c, "__dataclass_fields__"):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(c))).body[0].body
        for a, b in zip(body, body[1:]):
            if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant):
                out[a.target.id] = b.value.value
    return out


def help_text(module: str) -> str:
    # 120 columns: one column of help (tyro lays the groups out in columns from 130 on, once they are long)
    env = {**os.environ, "COLUMNS": "120", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, env=env, cwd=ROOT,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", r.stdout).split())


def words(doc: str, k: int = 6) -> str:
    return " ".join(doc.split()[:k])


@pytest.mark.parametrize("module, cls, short", [("llm.train", TrainConfig, "--lr"), ("llm.ics", ICSArgs, "--votes")])
def test_help_lists_every_field_with_its_doc_and_default(module, cls, short):
    text = help_text(module)
    for dotted in cli.leaves(cls):
        owner = cls
        for part in dotted.split(".")[:-1]:
            owner = owner.__dataclass_fields__[part].default_factory
        doc = field_docs(owner)[dotted.rsplit(".", 1)[-1]]
        at = text.find(f"--{dotted} ")
        assert at >= 0, dotted
        seg = text[at:at + 600]
        assert words(doc) in seg and "(default:" in seg, (dotted, seg[:300])
    assert "--config FILE.yaml" in text and short in text  # the YAML option and the short forms


def test_old_flag_forms_and_explicit_fields(tmp_path):
    cfg, given = parse_command_line(["--resume", "--progress", "false", "--lr", "1e-4", "--max-thoughts", "3",
                                     "--n_fresh=4", "--loss.kind", "ppo", "--inner_epochs", "2"])
    assert cfg.resume and not cfg.progress and cfg.optim.lr == 1e-4 and cfg.rollout.max_thoughts == 3
    assert given == {"resume", "progress", "optim.lr", "rollout.max_thoughts", "rollout.n_fresh", "loss.kind",
                     "loss.inner_epochs"}
    cfg, given = parse_command_line(["--resume", "true", "--fsdp", "no", "--method", "grpo"])
    assert cfg.resume and not cfg.fsdp and cfg.rollout.method == "grpo" and given == {"resume", "fsdp", "method"}
    y = tmp_path / "c.yaml"
    y.write_text("steps: 7\noptim: {lr: 0.5}\n")
    cfg, given = parse_command_line(["--config", str(y), "--lr", "0.25"])
    assert (cfg.steps, cfg.optim.lr) == (7, 0.25) and given == {"optim.lr"}  # the YAML is not "explicit"
    with pytest.raises(ValueError, match="unknown option --nonsense"):
        parse_command_line(["--nonsense", "1"])
    with pytest.raises(ValueError, match="set --method"):
        parse_command_line(["--rollout.method", "grpo"])
    with pytest.raises(ValueError, match="expects 2 values"):
        parse_command_line(["--betas", "0.9"])
    a, given = ics_command_line(["--max-iters", "3", "--no_progress", "--context", "--votes", "1"])
    assert (a.max_iters, a.progress, a.context) == (3, False, True)
    assert given == {"max_iters", "progress", "context", "verify_votes"}


def test_ics_yaml_config(tmp_path):
    y = tmp_path / "ics.yaml"
    y.write_text("method: [thought, scratch]\nlevel: L1\nn: 5\n")
    a, given = ics_command_line(["--config", str(y), "--n", "3"])
    assert a.method == ("thought", "scratch") and a.level == "L1" and a.n == 3 and given == {"n"}
    assert list(a.configs()) == ["thought L1", "scratch L1"]


def _llm_modules() -> list[str]:
    pkg = ROOT / "llm"
    return sorted("llm." + ".".join(p.relative_to(pkg).with_suffix("").parts)
                  for p in pkg.rglob("*.py") if p.name != "__main__.py" and p.name != "__init__.py") + ["llm.ics"]


def test_no_import_cycle_inside_llm():
    """The import graph of llm/ (module- and function-level ``from .x import`` / ``import llm.x``) is
    acyclic, and every module imports on its own in a fresh interpreter."""
    pkg = ROOT / "llm"
    graph: dict[str, set[str]] = {}
    for p in pkg.rglob("*.py"):
        if p.name == "__main__.py":
            continue
        parts = list(p.relative_to(pkg).with_suffix("").parts)
        name = ".".join(["llm"] + (parts[:-1] if parts[-1] == "__init__" else parts))
        package = name if p.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t.startswith("llm")}
        graph[name] = deps
    known = set(graph)
    graph = {k: {d for d in v if d in known and d != k and not k.startswith(d + ".")} for k, v in graph.items()}
    state: dict[str, int] = {}

    def visit(n, path):
        if state.get(n) == 1:
            raise AssertionError("import cycle: " + " -> ".join(path + [n]))
        if state.get(n) == 2:
            return
        state[n] = 1
        for d in sorted(graph[n]):
            visit(d, path + [n])
        state[n] = 2

    for n in sorted(graph):
        visit(n, [])
    code = "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)"
    r = subprocess.run([sys.executable, "-c", code, *_llm_modules()], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
