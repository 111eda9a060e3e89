"""Tools for testing Work API servers and workers against workstate.

The submodules are imported on their own so that each needs only what it needs:

- ``workstate.testing.paths``: shortest request sequences reaching every edge of the
  transition table (no extra dependencies);
- the hypothesis-based oracle kit (needs the ``testing`` extra: ``pip install 'workstate[testing]'``).
"""
