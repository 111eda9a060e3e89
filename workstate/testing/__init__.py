"""Tools for testing Work API servers and workers against workstate.

The submodules are imported on their own so that each needs only what it needs:

- ``workstate.testing.paths``: shortest request sequences reaching every edge of the
  transition table (no extra dependencies);
- ``workstate.testing.target``: the ``Target`` protocol a server under test implements, the
  reference as a target, and ``AsyncBridge`` for async servers (no extra dependencies);
- ``workstate.testing.http``: ``HttpTarget``, a server over HTTP (standard library only);
- ``workstate.testing.mutants``: deliberately wrong servers, the kit's teeth (no extra dependencies);
- ``workstate.testing.strategies`` and ``workstate.testing.lockstep``: the hypothesis-based oracle
  kit (needs the ``testing`` extra: ``pip install 'workstate[testing]'``);
- ``workstate.testing.plugin``: the pytest fixture ``workstate_lockstep`` (registered by entry point).

docs/testing-guide.md shows how to test a server with them.
"""
