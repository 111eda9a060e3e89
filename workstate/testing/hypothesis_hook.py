"""The ``hypothesis`` entry point of workstate: ``st.from_type(WorkItem)`` works as soon as hypothesis is imported.

Hypothesis runs :func:`_hypothesis_setup_hook` at the end of ``import hypothesis`` in every environment where
workstate is installed (``HYPOTHESIS_NO_PLUGINS=1`` turns it off). The hook costs the import of workstate's
core and nothing else: it registers :class:`~workstate.WorkItem` and each command class with a resolver,
and the strategies themselves (:mod:`workstate.testing.strategies`, which re-registers them when imported)
are imported the first time ``st.from_type`` resolves one of those types.
"""

from __future__ import annotations

__all__ = ["_hypothesis_setup_hook"]


def _resolve(kind: type) -> object:
    from .strategies import TYPE_STRATEGIES

    return TYPE_STRATEGIES[kind]


def _hypothesis_setup_hook() -> None:
    from hypothesis import strategies as st

    from ..model import Ack, Deliver, Heartbeat, Lapse, Stop, UpdateMetadata, WorkItem

    for kind in (WorkItem, Deliver, Ack, Heartbeat, Stop, UpdateMetadata, Lapse):
        st.register_type_strategy(kind, _resolve)  # type: ignore[arg-type]
