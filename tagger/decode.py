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
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text


def stream_audio(path: str | Path, sample_rate: int = MODEL_RATE,
                 chunk_seconds: float = 30.0) -> Iterator[np.ndarray]:
    """Yield consecutive mono float32 chunks of about ``chunk_seconds``.

    Memory stays bounded by the chunk size whatever the file's duration.
    """
    import av
    container = _open(path)
    chunk = max(1, int(chunk_seconds * sample_rate))
    try:
        stream = container.streams.audio[0]
        stream.thread_type = "AUTO"
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        pending: list[np.ndarray] = []
        size = 0
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    pending.append(out.to_ndarray().reshape(-1))
                    size += pending[-1].size
                while size >= chunk:
                    data = np.concatenate(pending)
                    yield data[:chunk].copy()
                    pending, size = [data[chunk:]], data.size - chunk
            for out in resampler.resample(None):
                pending.append(out.to_ndarray().reshape(-1))
        except av.FFmpegError as e:
            raise DecodeError(f"decoding failed ({_reason(e)})") from None
        if pending:
            data = np.concatenate(pending)
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
