"""The results report, one module per topic.

Each topic module defines

* ``FILES``: the JSON files it reads from the figure folder (``{key: filename}``);
* ``claims(d) -> list[str]``: one bullet per claim of the source papers, each with its verdict
  and the rule that decides it (the rules are small functions in the module, tested);
* ``section(d) -> list[str]``: the topic's tables;
* ``captions(d, figs) -> list[str]``: caption lines for ``paper_figs/README.md``.

``d`` maps each key of ``FILES`` to the loaded JSON (None if the step did not run).
``experiments/report.py`` assembles them in the orders below.
"""
from . import bounds, dial, ics, iterative_ppo, llm, resets

CLAIMS_ORDER = (bounds, resets, iterative_ppo, dial, llm, ics)
"""topics in the order their claims appear in REPORT.md"""
SECTIONS_ORDER = (dial, llm, ics, resets, iterative_ppo, bounds)
"""topics in the order their tables appear in REPORT.md"""
CAPTIONS_ORDER = (resets, bounds, iterative_ppo, dial, llm, ics)
"""topics in the order their figures are captioned in paper_figs/README.md"""
TOPICS = tuple(dict.fromkeys(CLAIMS_ORDER + SECTIONS_ORDER + CAPTIONS_ORDER))
