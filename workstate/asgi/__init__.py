"""The ASGI edge (an I/O adapter): the reference server as a raw ASGI 3 application (:mod:`.app`), which
``workstate serve`` runs under uvicorn. It reads the wall clock, holds a lock and writes the record; the
rules stay in :func:`workstate.step`, the wire in :mod:`workstate.api`."""

from .app import *  # noqa: F403
from .app import __all__ as __all__
