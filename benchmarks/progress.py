"""Progress of a long loop: a tqdm bar on a terminal, a log line every ``INTERVAL_S`` seconds
elsewhere (CI, cluster jobs, a pipe), so that no long run is silent. It only reads the clock: no
random draw, no number of a run changes."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger(__name__)
INTERVAL_S = 30.0


class Progress:
    """``total`` units of work (``unit``: estimates, steps) done in ``update(n)`` calls; ``what``
    says where the loop is (a cost and k), shown beside the count."""

    def __init__(self, total: int, unit: str, initial: int = 0) -> None:
        self.total, self.unit, self.done, self.what = total, unit, initial, ""
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit=unit, unit_scale=True, leave=False)
        self.next_log = time.monotonic() + INTERVAL_S

    def describe(self, what: str) -> None:
        """Name the part of the work under way."""
        self.what = what
        if self.bar is not None:
            self.bar.set_description(what, refresh=False)

    def update(self, n: int = 1) -> None:
        """``n`` more units done: the bar moves (tqdm throttles its redraws), or a log line at
        most every ``INTERVAL_S`` seconds."""
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif time.monotonic() >= self.next_log:
            self.next_log = time.monotonic() + INTERVAL_S
            share = 100 * self.done / self.total if self.total else 100.0
            log.info("%s: %d of %d %s (%.0f%%)", self.what, self.done, self.total, self.unit, share)

    def show(self, **values: str) -> None:
        """Values beside the bar (the VAE's train ELBO); nothing in log lines."""
        if self.bar is not None:
            self.bar.set_postfix(values, refresh=False)

    def note(self, line: str) -> None:
        """A line of its own: above the bar on a terminal, a log line elsewhere."""
        if self.bar is not None:
            self.bar.write(line)
        else:
            log.info(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
