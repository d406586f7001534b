"""The reset experiment on a transformer (``experiments/llm_resets.py``): stage 1 (no training), stage 2
(training), statistics and figures."""
