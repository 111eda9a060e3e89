"""The sans-I/O HTTP-shaped surface of the Work API: the wire, the routes, the codec and the reference Server."""

from .routes import BASE_PATH as BASE_PATH
from .server import *  # noqa: F403
from .server import __all__ as __all__
