"""The progress bar and end-of-run summary shared by `keychords tag` and `beet keychords`."""

from __future__ import annotations

import sys
import time


class RunProgress:
    """A tqdm bar on stderr, shown only on a terminal, with audio speed.

    Use as a context manager; :meth:`advance` once per file, :meth:`write`
    for a line that must not break the bar.
    """

    def __init__(self, total: int, unit: str = "file", desc: str | None = None,
                 enabled: bool = True):
        from tqdm import tqdm
        self._tqdm = tqdm
        # disable=None: tqdm shows the bar only when stderr is a terminal.
        self.bar = tqdm(total=total, unit=unit, desc=desc, file=sys.stderr,
                        disable=None if enabled else True, dynamic_ncols=True)
        self.start = time.monotonic()
        self.audio_seconds = 0.0

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()

    @property
    def wall(self) -> float:
        return time.monotonic() - self.start

    def advance(self, audio_seconds: float = 0.0) -> None:
        self.audio_seconds += audio_seconds
        self.bar.update(1)
        self.bar.set_postfix_str(f"{self.audio_seconds / max(self.wall, 1e-9):.1f}x realtime",
                                 refresh=False)

    def write(self, line: str, file=None) -> None:
        """Print ``line`` (to stderr unless ``file``) without breaking the bar."""
        self._tqdm.write(line, file=file or sys.stderr)

    def summary(self, counts: list[tuple[int, str]]) -> str:
        """``keychords: 8 analysed, 0 skipped, 1 failed in 2.0 s (4.0 min of
        audio, 120.0x realtime)`` from ``[(8, "analysed"), ...]``."""
        wall, audio = self.wall, self.audio_seconds
        parts = ", ".join(f"{n} {what}" for n, what in counts)
        speed = (f" ({audio / 60:.1f} min of audio, {audio / max(wall, 1e-9):.1f}x realtime)"
                 if audio else "")
        return f"keychords: {parts} in {wall:.1f} s{speed}"
