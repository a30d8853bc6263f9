"""``python -m errands.cli``: the ``errands`` command."""

from errands.cli import main

main()
