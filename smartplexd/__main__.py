"""``python -m smartplexd`` is the same as the ``smartplexd`` command."""

from smartplexd.cli import run

run()
