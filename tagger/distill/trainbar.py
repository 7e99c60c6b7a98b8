"""The training progress bar: its total (and so its ETA) respects a time limit.

With ``--minutes`` a run ends when the time is up, long before ``--steps``;
a bar over ``--steps`` then shows an ETA of hours for a two-minute run. Here
the total is the steps that fit: once a few steps have shown the speed, it
becomes ``min(max_steps, steps done + speed x time left)``, re-estimated as
the run goes.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TrainBar:
    """A tqdm bar over training steps, as a context manager; :meth:`wrap` a
    ``train_step(step)`` and give that to :func:`.loop.run_loop` (with its own
    bar off)."""

    MEASURE_STEPS = 3     # steps timed before the total is estimated

    def __init__(self, max_steps: int, max_minutes: float, desc: str, enabled: bool = True,
                 clock: Callable[[], float] = time.monotonic):
        from tqdm import tqdm
        self.max_steps, self.max_minutes, self.clock = max_steps, max_minutes, clock
        self.bar = tqdm(total=max_steps, unit="step", desc=desc, disable=not enabled,
                        dynamic_ncols=True, delay=1.0)   # a resumed, finished run: no bar
        self.start: float | None = None
        self.first_step = self.done = 0

    def wrap(self, train_step: Callable[[int], dict]) -> Callable[[int], dict]:
        def step(i: int) -> dict:
            if self.start is None:
                self.start, self.first_step = self.clock(), i
                self.bar.n = self.bar.last_print_n = self.done = i
            parts = train_step(i)
            self.advance(i + 1, parts)
            return parts
        return step

    def advance(self, done: int, parts: dict | None = None) -> None:
        """``done`` steps finished (``parts``: the last step's losses)."""
        self.bar.total = self.expected_total(done)
        self.bar.update(done - self.done)
        self.done = done
        if parts is not None and done % 10 == 0:
            self.bar.set_postfix_str(f"loss {float(parts['loss']):.3f}", refresh=False)

    def expected_total(self, done: int) -> int:
        """The steps this run will make: ``max_steps``, or fewer under a time limit."""
        session = done - self.first_step
        if not self.max_minutes or self.start is None or session < self.MEASURE_STEPS:
            return self.max_steps
        spent = self.clock() - self.start
        left = max(0.0, self.max_minutes * 60 - spent)
        fit = done + round(left * session / max(spent, 1e-9))
        return max(done, min(self.max_steps, fit))

    def __enter__(self) -> TrainBar:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()


__all__ = ["TrainBar"]
