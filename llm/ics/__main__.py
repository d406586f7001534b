"""``python -m llm.ics``: see ``llm.ics.cli``."""
from .cli import main

main()
