"""One-line reports of what `keychords tag` did with a file (``-v``)."""

from __future__ import annotations


def outcome_line(o) -> str:
    """``PATH: key Am, chords Am F C G; wrote initial_key, chords`` for an
    analysed file (what was written and which of the file's own values were
    kept); ``PATH: skipped (reason)`` or ``PATH: failed (reason)`` otherwise."""
    if o.status != "ok":
        return f"{o.path}: {o.status} ({o.error})"
    done = []
    if o.written:
        done.append(f"wrote {', '.join(o.written)}")
    if o.kept:
        done.append(f"kept the file's own {', '.join(o.kept)} (--overwrite to replace)")
    if not done:
        done.append("tags already up to date")
    key, chords = o.tags.get("initial_key") or "-", o.tags.get("chords") or "-"
    return f"{o.path}: key {key}, chords {chords}; {'; '.join(done)}"
