"""The sans-I/O worker driver (:mod:`workstate.worker.driver`)."""

from .driver import *  # noqa: F403
from .driver import __all__ as __all__
