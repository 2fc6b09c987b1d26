"""smartplexd keeps a Plex library lean, safely."""

__version__ = "0.1.0"
