"""Decoding worker processes (no torch here: workers stay small).

Each worker streams a file's audio as chunks through a bounded queue.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
from collections.abc import Iterator

CHUNK_SECONDS = 30.0


def decode_messages(path: str, sample_rate: int) -> Iterator[tuple]:
    """``("chunk", samples)``... then ``("end", (size, mtime_ns))`` or ``("error", reason)``."""
    from .decode import DecodeError, stream_audio
    try:
        if os.path.isdir(path):
            raise DecodeError("is a folder, not a file")
        stat = os.stat(path)
        if stat.st_size == 0:
            raise DecodeError("empty file (0 bytes)")
        for chunk in stream_audio(path, sample_rate, CHUNK_SECONDS):
            yield ("chunk", chunk)
        yield ("end", (stat.st_size, stat.st_mtime_ns))
    except DecodeError as e:
        yield ("error", str(e))
    except PermissionError:
        yield ("error", "permission denied (cannot read)")
    except FileNotFoundError:
        yield ("error", "file vanished")
    except OSError as e:
        yield ("error", f"cannot read ({e.strerror or e})")
    except MemoryError:
        yield ("error", "out of memory while decoding")
    except Exception as e:  # a decoder bug must not stop the run
        yield ("error", f"decoding failed ({type(e).__name__}: {e})")


def _parent_alive() -> bool:
    parent = mp.parent_process()
    return parent is None or parent.is_alive()


def _worker(tasks, out, sample_rate: int) -> None:
    # Waits are bounded so that a worker whose parent was killed (SIGKILL
    # skips every cleanup) notices and exits instead of blocking for ever;
    # it then drops what it had queued (nobody will read it).
    while True:
        try:
            item = tasks.get(timeout=1.0)
        except queue.Empty:
            if not _parent_alive():
                break
            continue
        if item is None:
            return
        idx, path = item
        for msg in decode_messages(path, sample_rate):
            while True:
                try:
                    out.put((idx,) + msg, timeout=1.0)
                    break
                except queue.Full:
                    if not _parent_alive():
                        out.cancel_join_thread()
                        return
        if not _parent_alive():
            break
    out.cancel_join_thread()


def decoded_stream(paths: list[str], sample_rate: int, workers: int) -> Iterator[tuple]:
    """Yield ``(index, kind, payload)`` messages; at most ``workers + 1`` files in flight."""
    if workers <= 0:
        for i, p in enumerate(paths):
            for m in decode_messages(p, sample_rate):
                yield (i,) + m
        return
    ctx = mp.get_context("spawn")
    tasks, out = ctx.Queue(), ctx.Queue(maxsize=4 * workers)
    procs = [ctx.Process(target=_worker, args=(tasks, out, sample_rate), daemon=True)
             for _ in range(workers)]
    for pr in procs:
        pr.start()
    pending = list(enumerate(paths))[::-1]
    in_flight = 0
    try:
        while pending or in_flight:
            while pending and in_flight < workers + 1:
                tasks.put(pending.pop())
                in_flight += 1
            try:
                msg = out.get(timeout=5.0)
            except queue.Empty:
                if not any(pr.is_alive() for pr in procs):
                    raise RuntimeError("all decoding workers died") from None
                continue
            if msg[1] in ("end", "error"):
                in_flight -= 1
            yield msg
    finally:
        for _ in procs:
            tasks.put(None)
        for pr in procs:
            pr.join(timeout=5)
            if pr.is_alive():
                pr.terminate()


