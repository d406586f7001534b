"""Thought-ICS: iterative correction sampling of thoughts at inference time.

Algorithm ("Structure Enables Effective Self-Localization of Errors in LLMs", 2026;
``docs/llm.md``, "Thought-ICS")::

    tau = generate(x)                                   # temperature 1.0
    repeat up to L times (default 10):
        if verify(tau):  exit (1) "verified"
        e = localize(tau)                               # 1-based first wrong thought, judge temp 0.3
        if e == 0:       exit (2) "disagreement"        # localizer says nothing is wrong
        tau = generate(x, prefix = thoughts 1..e-1 of tau)   # temperature 0.7
    exit (3) "max iterations"

Verifier levels: L1 and L2 use the task's reward (L1 also shows the ground truth to the
localizer, L2 only says the answer is wrong); L3 asks the model itself for a boxed YES/NO
verdict (majority over ``verify_votes`` samples; an unparseable verdict counts as NO and is
counted). **Thought-ICS-A** keeps the first answer on exits (2) and (3); both readings come
out of one run (``final_correct`` and ``final_correct_a``).

Methods sharing the loop and the budget (at most ``1 + L`` chains and ``L`` localization /
feedback calls, plus the verifier calls at L3), one localizer class each (``localizers``):
``thought`` (reset to the clean prefix of thoughts 1..e-1), ``token`` (Token-ICS: the chain as one
block of text, the first wrong span quoted, resampled from the last whole token before it),
``scratch`` (resample from scratch) and ``refine`` (Self-Refine: feedback on the whole answer, then a
new chain). ``localizer="oracle"`` replaces the model's localization by the task's step checker
(``task.first_error``): the upper bound of Thought-ICS.

Modules: ``config`` (ICSConfig), ``records`` (Attempt, Round, ProblemResult), ``prompts`` (prompt
texts and span arithmetic), ``localizers``, ``loop`` (run_ics), ``metrics`` (summaries, table), ``io``
(files of a run), ``cli`` (``python -m llm.ics``). Everything here is per problem; token ids are
Python lists.
"""
from .cli import ICSArgs, load_model_and_task, main, parse_command_line
from .config import EXITS, TINY_BUDGET, ICSConfig, Level, LocalizerKind, Method, run_label
from .io import read_summary, write_run
from .localizers import LOCALIZERS, localizer_for, oracle_index, prefix_cut
from .loop import run_ics
from .metrics import format_summary, localization_scores, summarize, transition_counts
from .records import Attempt, ProblemResult, Round

__all__ = ["ICSConfig", "ICSArgs", "Method", "Level", "LocalizerKind", "EXITS", "TINY_BUDGET", "run_label",
           "Attempt", "Round", "ProblemResult", "run_ics", "summarize", "format_summary", "transition_counts",
           "localization_scores", "prefix_cut", "oracle_index", "LOCALIZERS", "localizer_for", "write_run",
           "read_summary", "load_model_and_task", "parse_command_line", "main"]
