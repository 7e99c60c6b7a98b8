"""The training progress bar: its total (and so its ETA) respects a time limit.

With ``--minutes`` a run ends when the time is up, long before ``--steps``;
a bar over ``--steps`` would show an ETA of hours for a two-minute run. Here
the total is the steps that fit: once a few steps of this session have shown
the speed, it becomes ``min(max_steps, steps done + speed x time left)``,
re-estimated as the run goes (time left counts the earlier sessions of a
resumed run, as the time limit does).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TrainBar:
    """A tqdm bar over training steps, driven by :func:`.loop.run_loop`."""

    MEASURE_STEPS = 3     # steps timed before the total is estimated

    def __init__(self, max_steps: int, max_minutes: float, desc: str, start_step: int = 0,
                 enabled: bool = True, clock: Callable[[], float] = time.monotonic):
        from tqdm import tqdm
        self.max_steps, self.max_minutes, self.clock = max_steps, max_minutes, clock
        self.first_step = self.done = start_step
        self.session_start = clock()
        self.bar = tqdm(total=max_steps, initial=start_step, unit="step", desc=desc,
                        disable=not enabled, dynamic_ncols=True)

    def advance(self, done: int, elapsed: float, postfix: str | None = None) -> None:
        """``done`` steps finished after ``elapsed`` seconds of training in all."""
        self.bar.total = self.expected_total(done, elapsed)
        self.bar.update(done - self.done)
        self.done = done
        if postfix is not None:
            self.bar.set_postfix_str(postfix, refresh=False)

    def expected_total(self, done: int, elapsed: float) -> int:
        """The steps this run will make: ``max_steps``, or fewer under a time limit."""
        session = done - self.first_step
        if not self.max_minutes or session < self.MEASURE_STEPS:
            return self.max_steps
        speed = session / max(self.clock() - self.session_start, 1e-9)
        left = max(0.0, self.max_minutes * 60 - elapsed)
        return max(done, min(self.max_steps, done + round(left * speed)))

    def close(self) -> None:
        self.bar.close()
