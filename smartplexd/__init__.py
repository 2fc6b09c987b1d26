"""smartplexd keeps a Plex library lean, safely."""

from smartplexd.plugins import hookimpl

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl"]
