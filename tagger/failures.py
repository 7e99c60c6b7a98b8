"""Which failures last until the file changes.

A file that is not audio, cannot be tagged or is read-only fails the same
way on every run; `keychords tag` remembers such failures (in
:class:`tagger.state.State`) and skips the file, saying why, until it
changes or ``--force``. Anything else (locked by another process, changed
or vanished during the run, a model or memory failure) is tried again.
"""

from __future__ import annotations

# Starts of the one-line reasons (tagger.decode, tagger.workers, tagger.tags)
# that depend only on the file itself.
LASTING = ("not an audio file", "empty file", "no audio stream", "cannot be tagged",
           "permission denied: the file is read-only", "permission denied (cannot read)")


def is_lasting(error: str) -> bool:
    return error.startswith(LASTING)


FAILED_BEFORE = "failed before: "


def skipped_reason(error: str) -> str:
    """The skip reason of a file that failed before with ``error``."""
    return f"{FAILED_BEFORE}{error}; --force to retry"


def is_failed_before(reason: str) -> bool:
    return reason.startswith(FAILED_BEFORE)
