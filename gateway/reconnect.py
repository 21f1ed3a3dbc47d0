"""How long to wait before the next session with a device: exponential backoff with jitter.

Pure: the caller keeps the count of consecutive failed sessions per device and passes its
random source, so tests are deterministic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ReconnectBackoff:
    """Delay before the next session attempt with one device.

    After a session that went well the delay is ``initial``; each consecutive failure
    (no connection, or the link lost before the session's steps were done) multiplies it
    by ``factor``, up to ``maximum``. ``jitter`` is the fraction of the delay drawn at
    random (``delay * (1 - jitter * U[0, 1))``) so that devices, and hubs, that failed
    together do not retry in lock-step.
    """

    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 300.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < self.initial:
            raise ValueError("need 0 <= initial <= maximum")
        if self.factor < 1:
            raise ValueError("factor must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter is a fraction between 0 and 1")

    def delay(self, failures: int, rng: random.Random) -> float:
        """Seconds to wait after ``failures`` consecutive failed sessions (0: the last went
        well)."""
        # cap the exponent too: factor ** failures must not overflow on a long outage
        growth = self.factor ** min(failures, 64)
        ceiling = min(self.maximum, self.initial * growth)
        return ceiling * (1.0 - self.jitter * rng.random())
