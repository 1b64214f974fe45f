"""ticketflow: classify support tickets as they stream through Kafka.

Importing the package does nothing but define ``__version__``; every part is imported by
the entry point that needs it (``ticketflow.cli``, the Faust worker, the monitor).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ticketflow")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
