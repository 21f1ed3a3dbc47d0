"""Simulated device feeds: the JSON Lines format, replay, converters and scoring.

Public API:

- :mod:`firmware_sim.feeds.format`: :class:`FeedEvent`, :func:`read_feed`,
  :func:`write_feed`, :func:`parse_line`, :class:`FeedError`.
- :mod:`firmware_sim.feeds.replay`: :func:`replay_feed` into a store (ingest + alerting
  in-process, on the feed's own clock).
- :mod:`firmware_sim.feeds.glucose`: the shared UVA/Padova glucose traces as feeds.
- :mod:`firmware_sim.feeds.truth`: ground-truth files (episodes, monitored patients).
- :mod:`firmware_sim.feeds.score`: alerts against ground truth.

The format is documented in ``docs/feeds.md`` with a JSON Schema in ``docs/feed.schema.json``.
"""

from __future__ import annotations

from firmware_sim.feeds.format import (
    FeedError,
    FeedEvent,
    format_event,
    parse_line,
    read_feed,
    write_feed,
)

__all__ = ["FeedError", "FeedEvent", "format_event", "parse_line", "read_feed", "write_feed"]
