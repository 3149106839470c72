"""uvicorn, with a readiness drain before a graceful stop.

On SIGTERM, /readyz answers 503 at once while requests are still accepted and served for
SHUTDOWN_DELAY_SECONDS, so that load balancers and Kubernetes stop sending traffic before
the listening socket closes; then uvicorn's graceful shutdown runs (in-flight requests
finish, the lifespan flushes the store). SIGINT (Ctrl-C) and a second SIGTERM skip the wait.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

import uvicorn

logger = logging.getLogger("graph.app")


class DrainingServer(uvicorn.Server):
    def __init__(
        self, config: uvicorn.Config, *, begin_draining: Callable[[], None], delay: float
    ) -> None:
        super().__init__(config)
        self._begin_draining = begin_draining
        self._delay = delay
        self._draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self._delay <= 0 or self._draining:
            super().handle_exit(sig, frame)
            return
        self._draining = True
        self._begin_draining()
        logger.info("SIGTERM: not ready any more; stopping in %ss", self._delay)
        timer = threading.Timer(self._delay, super().handle_exit, (sig, frame))
        timer.daemon = True
        timer.start()
