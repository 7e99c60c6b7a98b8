"""Audio decoding with PyAV: any container/codec FFmpeg reads -> mono float32.

Resampling and down-mixing happen inside libswresample while decoding.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

MODEL_RATE = 22050
MIN_SECONDS = 3.0      # shorter tracks carry too little harmony to analyse
SILENCE_PEAK = 1e-4    # below -80 dBFS: nothing to analyse


class DecodeError(Exception):
    """A file could not be decoded (message: the reason, one line)."""


def unusable_reason(n_samples: int, peak: float, sample_rate: int) -> str:
    """Why decoded audio cannot be analysed (``""`` when it can): no samples,
    shorter than :data:`MIN_SECONDS`, or silent (peak below :data:`SILENCE_PEAK`)."""
    if n_samples == 0:
        return "no audio samples"
    if n_samples / sample_rate < MIN_SECONDS:
        return f"too short ({n_samples / sample_rate:.1f} s < {MIN_SECONDS:.0f} s)"
    if peak < SILENCE_PEAK:
        return "silent audio"
    return ""


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


def incomplete_reason(path: str | Path, ratio: float = TRUNCATION_RATIO) -> str | None:
    """Why a WAV, AIFF or Ogg file is cut short, from its own structure; None
    if it looks whole.

    WAV/AIFF: the audio chunk holds less than ``ratio`` of the bytes it
    declares. ``ratio=1.0`` (what tag writing uses) is strict: any chunk that
    runs past the end of the file, or an audio chunk of unknown length, is
    reported. Ogg: the last page is cut short, or the stream has no end page.
    (Other containers declare their duration, which decoding checks.)
    """
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            size = f.seek(0, 2)
            if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
                return _chunks_cut(f, size, "little", b"data", ratio)
            if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
                return _chunks_cut(f, size, "big", b"SSND", ratio)
            if head[:4] == b"OggS":
                f.seek(max(0, size - _OGG_TAIL))
                return _ogg_cut(f.read())
    except OSError:
        return None
    return None


def _chunks_cut(f, size: int, order: str, audio_id: bytes, ratio: float) -> str | None:
    strict = ratio >= 1.0
    pos = 12
    while pos + 8 <= size:
        f.seek(pos)
        cid, csize = f.read(4), int.from_bytes(f.read(4), order)
        have = size - pos - 8
        if cid == audio_id:
            if csize in (0, 0xFFFFFFFF):
                if strict:
                    return "unfinished: the audio data chunk does not state its length"
            elif have < ratio * csize:
                return f"truncated: {have} of the {csize} bytes of audio data the file declares"
            if not strict:
                return None
        elif strict and have < csize:
            name = cid.decode("latin-1").strip() or "?"
            return f"truncated: the file ends inside its '{name}' chunk"
        pos += 8 + csize + (csize & 1)
    return None


_OGG_TAIL = 2 * 65536    # two of the largest possible Ogg pages


def _ogg_crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    return table


_OGG_CRC = _ogg_crc_table()


def _ogg_page_end(data: bytes, pos: int) -> int | None:
    """End of the Ogg page whose header starts at ``pos`` (may lie past the
    data); None when no page header fits there."""
    if data[pos:pos + 4] != b"OggS" or len(data) < pos + 27 or data[pos + 4] != 0:
        return None
    nseg = data[pos + 26]
    if len(data) < pos + 27 + nseg:
        return len(data) + 1  # the header itself is cut
    return pos + 27 + nseg + sum(data[pos + 27: pos + 27 + nseg])


def _ogg_crc_ok(page: bytes) -> bool:
    crc = 0
    body = page[:22] + b"\0\0\0\0" + page[26:]
    for b in body:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _OGG_CRC[((crc >> 24) & 0xFF) ^ b]
    return crc == int.from_bytes(page[22:26], "little")


def _ogg_cut(tail: bytes) -> str | None:
    """Walk the pages of the file's last bytes from the first one whose CRC
    checks out (so that "OggS" inside audio data cannot fool it)."""
    start = tail.find(b"OggS")
    while start >= 0:
        end = _ogg_page_end(tail, start)
        if end is not None and end <= len(tail) and _ogg_crc_ok(tail[start:end]):
            break
        start = tail.find(b"OggS", start + 1)
    if start < 0:
        return "truncated: no complete Ogg page at the end of the file"
    last = start
    pos = end
    while pos < len(tail):
        end = _ogg_page_end(tail, pos)
        if end is None:
            break  # not a page: trailing bytes after the stream (e.g. an ID3v1 tag)
        if end > len(tail):
            return "truncated: the last Ogg page is cut short"
        last, pos = pos, end
    if not tail[last + 5] & 0x04:
        return "truncated: the Ogg stream has no end page"
    return None


def _open(path: str | Path):
    import av
    try:
        container = av.open(str(path))
    except PermissionError:
        raise DecodeError("permission denied (cannot read)") from None
    except FileNotFoundError:
        raise DecodeError("file vanished") from None
    except (av.FFmpegError, OSError, ValueError) as e:
        raise DecodeError(f"cannot open as audio ({_reason(e)})") from None
    if not container.streams.audio:
        container.close()
        raise DecodeError("no audio stream")
    return container


def _looks_like_audio(path) -> bool:
    from .scan import sniff_audio
    return sniff_audio(path)


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
        if total == 0 and not _looks_like_audio(path):
            raise DecodeError("not an audio file")
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
