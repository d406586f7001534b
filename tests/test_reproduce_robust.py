"""experiments/reproduce.py: a step marked done whose outputs are gone runs again (and the report after
it); a signal to the driver reaches the step and everything it started. Fake steps keep this fast."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from experiments import reproduce as R

ROOT = Path(__file__).resolve().parents[1]


def _fake_steps(log: Path):
    """Each step writes its declared outputs and logs its name."""
    def commands(profile, figs, runs):
        outs = R.step_outputs(profile, figs, runs)
        code = ("import sys, pathlib; [pathlib.Path(p).parent.mkdir(parents=True, exist_ok=True) or "
                "pathlib.Path(p).write_text('x') for p in sys.argv[2:]]; "
                "open(sys.argv[1], 'a').write(pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else 'none').stem + '\\n')")
        return {s: [sys.executable, "-c", code, str(log), *map(str, outs[s])] for s in R.STEPS}
    return commands


def test_a_step_whose_outputs_are_gone_runs_again(tmp_path, monkeypatch, capsys):
    log = tmp_path / "ran.txt"
    monkeypatch.setattr(R, "step_commands", _fake_steps(log))
    argv = ["--smoke", "--runs", str(tmp_path / "runs"), "--figs", str(tmp_path / "figs")]
    assert R.main(argv) == 0
    assert len(log.read_text().split()) == 8
    assert R.main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("done before, skipped") == 8 and "nothing to run" in out and len(log.read_text().split()) == 8
    (tmp_path / "figs" / "td_error.png").unlink()
    (tmp_path / "figs" / "ics_lift.csv").write_text("")  # emptied counts as missing
    assert R.main(argv) == 0
    out = capsys.readouterr().out
    assert "[pg_td] done before, but its outputs are missing or empty (td_error.png): re-running" in out
    assert "[ics] done before, but its outputs are missing or empty (ics_lift.csv)" in out
    assert "[report] re-running: pg_td, ics ran again" in out and out.count("done before, skipped") == 5
    assert (tmp_path / "figs" / "td_error.png").is_file()


def test_a_step_that_leaves_no_outputs_fails(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(R, "step_commands", lambda *a: {s: [sys.executable, "-c", "pass"] for s in R.STEPS})
    assert R.main(["--smoke", "--only", "bounds", "--runs", str(tmp_path / "r"), "--figs", str(tmp_path / "f")]) == 1
    assert "bounds_check.csv" in capsys.readouterr().err and not (tmp_path / "r" / "bounds.done").exists()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


DRIVER = textwrap.dedent("""
    import os, subprocess, sys, time
    sys.path.insert(0, {root!r})
    from experiments import reproduce as R
    R.GRACE_S = 2.0
    pidfile, ignore = sys.argv[1], sys.argv[2] == "1"
    step = (("import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); signal.signal(signal.SIGINT, "
             "signal.SIG_IGN); " if ignore else "") +
            "import os, subprocess, time; g = subprocess.Popen(['sleep', '300']); "
            f"open({{pidfile!r}}, 'w').write(f'{{{{os.getpid()}}}} {{{{g.pid}}}}'); time.sleep(300)")
    R.step_commands = lambda *a: {{s: [sys.executable, "-c", step] for s in R.STEPS}}
    sys.exit(R.main(["--smoke", "--runs", sys.argv[3], "--figs", sys.argv[3]]))
""")


@pytest.mark.parametrize("sig, ignore", [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGTERM, True)])
def test_a_signal_reaches_the_step_and_its_children(tmp_path, sig, ignore):
    """SIGTERM / SIGINT to reproduce.py go to the step's process group (the step and the runs it started);
    a step that ignores them is killed after the grace period; the driver exits with 128 + the signal."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(root=str(ROOT)))
    pidfile = tmp_path / "pids"
    p = subprocess.Popen([sys.executable, str(driver), str(pidfile), "1" if ignore else "0", str(tmp_path / "runs")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (pidfile.exists() and len(pidfile.read_text().split()) == 2):
        assert p.poll() is None and time.monotonic() < deadline, p.communicate()[1][-2000:]
        time.sleep(0.05)
    step, grandchild = map(int, pidfile.read_text().split())
    p.send_signal(sig)
    try:
        _, err = p.communicate(timeout=60)
    finally:
        for pid in (step, grandchild):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert p.returncode == 128 + sig, err[-2000:]
    assert f"interrupted by {signal.Signals(sig).name}" in err
    time.sleep(0.5)
    assert not _alive(step) and not _alive(grandchild)
