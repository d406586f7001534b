"""``python tests/llm/_even_main.py <llm.train flags>``: ``llm.train``'s command line with one extra task,
``--task even`` (the trainer tests' :class:`EvenTask`, whose reward the random micro model earns about half
the time, so updates are not zero). Used by the tests that kill, resume and race real processes."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import llm.tasks  # noqa: E402

from tests.llm._trainkit import EvenTask  # noqa: E402

_get_task = llm.tasks.get_task


def get_task(name, **kw):
    if name == "even":
        return EvenTask(**kw)
    return _get_task(name, **kw)


llm.tasks.get_task = get_task

if __name__ == "__main__":
    from llm.train import main
    sys.exit(main(sys.argv[1:]))
