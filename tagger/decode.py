"""Audio decoding with PyAV: any container/codec FFmpeg reads -> mono float32.

Resampling and down-mixing happen inside libswresample while decoding.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

MODEL_RATE = 22050


class DecodeError(Exception):
    """A file could not be decoded (message: the reason, one line)."""


# A file whose container declares a duration but yields less than this share
# of it is reported as truncated rather than analysed as a shorter track.
TRUNCATION_RATIO = 0.9


def declared_seconds(container, stream) -> float | None:
    """Duration the file claims, when it states one."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def incomplete_reason(path: str | Path) -> str | None:
    """Why a WAV or Ogg file is cut short, from its own structure; None if it looks whole.

    (Other containers declare their duration, which decoding checks.)
    """
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            size = f.seek(0, 2)
            if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
                pos = 12
                while pos + 8 <= size:
                    f.seek(pos)
                    cid, csize = f.read(4), int.from_bytes(f.read(4), "little")
                    if cid == b"data":
                        have = size - pos - 8
                        if csize not in (0, 0xFFFFFFFF) and have < TRUNCATION_RATIO * csize:
                            return (f"truncated: {have} of the {csize} bytes of audio data "
                                    f"the file declares")
                        return None
                    pos += 8 + csize + (csize & 1)
                return None
            if head[:4] == b"OggS":
                f.seek(max(0, size - 65536))
                tail = f.read()
                last = tail.rfind(b"OggS")
                if last < 0 or len(tail) < last + 6 or not tail[last + 5] & 0x04:
                    return "truncated: the Ogg stream has no end page"
    except OSError:
        return None
    return None


def _open(path: str | Path):
    import av
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as e:
        raise DecodeError(f"cannot open as audio ({_reason(e)})") from None
    if not container.streams.audio:
        container.close()
        raise DecodeError("no audio stream")
    return container


def _reason(e: Exception) -> str:
    """PyAV's message without the errno and the path (the caller names the file)."""
    text = getattr(e, "strerror", None) or str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def stream_audio(path: str | Path, sample_rate: int = MODEL_RATE,
                 chunk_seconds: float = 30.0) -> Iterator[np.ndarray]:
    """Yield consecutive mono float32 chunks of about ``chunk_seconds``.

    Memory stays bounded by the chunk size whatever the file's duration.
    """
    import av
    reason = incomplete_reason(path)
    if reason:
        raise DecodeError(reason)
    container = _open(path)
    chunk = max(1, int(chunk_seconds * sample_rate))
    try:
        stream = container.streams.audio[0]
        stream.thread_type = "AUTO"
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        declared = declared_seconds(container, stream)
        pending: list[np.ndarray] = []
        size = 0
        total = 0
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    pending.append(out.to_ndarray().reshape(-1))
                    size += pending[-1].size
                while size >= chunk:
                    data = np.concatenate(pending)
                    yield data[:chunk].copy()
                    total += chunk
                    pending, size = [data[chunk:]], data.size - chunk
            for out in resampler.resample(None):
                pending.append(out.to_ndarray().reshape(-1))
        except av.FFmpegError as e:
            raise DecodeError(f"decoding failed ({_reason(e)})") from None
        data = np.concatenate(pending) if pending else np.zeros(0, np.float32)
        total += data.size
        if declared and declared > 1.0 and total < TRUNCATION_RATIO * declared * sample_rate:
            raise DecodeError(f"truncated: decoded {total / sample_rate:.1f} s of the "
                              f"{declared:.1f} s the file declares")
        if data.size:
            yield data
    finally:
        container.close()


def load_audio(path: str | Path, sample_rate: int = MODEL_RATE) -> np.ndarray:
    """The whole file as mono float32 at ``sample_rate`` Hz."""
    parts = list(stream_audio(path, sample_rate))
    if not parts:
        raise DecodeError("no audio samples")
    return np.concatenate(parts).astype(np.float32, copy=False)
