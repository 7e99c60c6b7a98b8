"""Real, small audio files of every format keychords tags, made with PyAV.

``make_audio_file`` encodes a few seconds of a chord (sine tones) with the
encoders bundled in PyAV's wheels; ``add_existing_tags`` gives a file a
realistic set of tags that keychords does not own (title, artist, album, a
comment, cover art, ReplayGain, an unknown custom field) so that tests can
check that they survive a write.

Format names: ``mp3``, ``flac``, ``ogg`` (Vorbis), ``opus``, ``aac`` (M4A;
``m4a`` is an alias), ``alac`` (M4A), ``aiff``, ``wav``, ``wavpack``.

Encoders (PyAV 18 wheels): libmp3lame, flac, FFmpeg's own vorbis encoder
(experimental, stereo only; libvorbis is not in the wheels), libopus
(48 kHz), aac, alac, wavpack, pcm_s16le / pcm_s16be.
"""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path

import av
import numpy as np

# fmt -> (container format, default suffix, encoder candidates, forced rate)
FORMATS: dict[str, tuple[str, str, tuple[str, ...], int | None]] = {
    "mp3": ("mp3", ".mp3", ("libmp3lame", "mp3"), None),
    "flac": ("flac", ".flac", ("flac",), None),
    "ogg": ("ogg", ".ogg", ("libvorbis", "vorbis"), None),
    "opus": ("opus", ".opus", ("libopus", "opus"), 48000),
    "aac": ("ipod", ".m4a", ("aac",), None),
    "alac": ("ipod", ".m4a", ("alac",), None),
    "aiff": ("aiff", ".aiff", ("pcm_s16be",), None),
    "wav": ("wav", ".wav", ("pcm_s16le",), None),
    "wavpack": ("wv", ".wv", ("wavpack",), None),
}
ALIASES = {"m4a": "aac", "vorbis": "ogg", "wv": "wavpack", "aif": "aiff"}
ALL_FORMATS = tuple(FORMATS)

# The kind of tag each format carries.
TAG_KIND = {"mp3": "id3", "aiff": "id3", "wav": "id3", "flac": "vorbis",
            "ogg": "vorbis", "opus": "vorbis", "aac": "mp4", "alac": "mp4",
            "wavpack": "ape"}

# Encoders whose FFmpeg implementation is flagged experimental.
_EXPERIMENTAL = {"vorbis", "opus"}


def canonical(fmt: str) -> str:
    fmt = ALIASES.get(fmt.lower(), fmt.lower())
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    return fmt


def suffix(fmt: str) -> str:
    return FORMATS[canonical(fmt)][1]


def _encoder(candidates: tuple[str, ...]) -> str:
    for name in candidates:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # not in this FFmpeg build
            continue
    raise RuntimeError(f"none of the encoders {candidates} is available in PyAV")


def tone(seconds: float, sr: int, tone_hz=(261.63, 329.63, 392.0), channels: int = 2
         ) -> np.ndarray:
    """``(channels, n)`` float32 chord, 10 ms fades, peak below 0.5."""
    n = int(round(seconds * sr))
    t = np.arange(n, dtype=np.float64) / sr
    sig = sum(np.sin(2 * np.pi * f * t) for f in tone_hz) / max(len(tone_hz), 1) * 0.45
    fade = min(n // 2, int(0.01 * sr))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        sig[:fade] *= ramp
        sig[n - fade:] *= ramp[::-1]
    out = np.stack([sig * (1.0 - 0.1 * c) for c in range(channels)])
    return out.astype(np.float32)


def make_audio_file(path, fmt: str, seconds: float = 4.0, sr: int = 22050,
                    tone_hz=(261.63, 329.63, 392.0), channels: int = 2,
                    samples: np.ndarray | None = None) -> Path:
    """Encode ``seconds`` of a sine chord (or ``samples``, ``(channels, n)``
    float32 at ``sr``) into ``path`` as ``fmt``.

    The container is chosen from ``fmt``, not from the path's suffix, so a
    file can be made with a misleading name on purpose. Opus is always
    encoded at 48 kHz (libopus' rates do not include 22050).
    """
    fmt = canonical(fmt)
    container_fmt, _, candidates, forced_rate = FORMATS[fmt]
    codec = _encoder(candidates)
    rate = forced_rate or sr
    layout = {1: "mono", 2: "stereo"}[channels]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    if samples is None:
        samples = tone(seconds, rate, tone_hz, channels)
    elif rate != sr:
        raise ValueError(f"{fmt} is encoded at {rate} Hz: give samples at that rate")
    with av.open(str(path), "w", format=container_fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        if codec in _EXPERIMENTAL:
            stream.codec_context.options = {"strict": "experimental"}
        if codec in ("libmp3lame", "mp3"):
            stream.codec_context.bit_rate = 64000  # no Xing/VBR surprises
        out.start_encoding()
        cc = stream.codec_context
        resampler = av.AudioResampler(format=cc.format.name, layout=layout, rate=rate,
                                      frame_size=cc.frame_size or 1024)
        src = av.AudioFrame.from_ndarray(samples, format="fltp", layout=layout)
        src.sample_rate = rate
        src.pts = 0
        for frame in resampler.resample(src) + resampler.resample(None):
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def decode_samples(path) -> np.ndarray:
    """Every decoded sample of the first audio stream, ``(channels, n)``, exactly
    as the decoder produced it (no resampling or conversion)."""
    chunks = []
    with av.open(str(path)) as f:
        stream = f.streams.audio[0]
        for frame in f.decode(stream):
            arr = frame.to_ndarray()
            if not frame.format.is_planar:
                arr = arr.reshape(-1, len(frame.layout.channels)).T
            chunks.append(arr)
    if not chunks:
        return np.zeros((0, 0))
    return np.concatenate(chunks, axis=1)


# --- tags that keychords does not own ---------------------------------------

def tiny_png(width: int = 2, height: int = 2, rgb=(200, 30, 60)) -> bytes:
    """A valid little PNG (so readers that parse the picture accept it)."""
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


COVER = tiny_png()
OTHER_TAGS = {
    "title": "Test Tone ♪",
    "artist": "Sine Wave Ensemble",
    "album": "Fixtures, Vol. 1",
    "comment": "made by tests/audio_fixtures.py",
    "replaygain_track_gain": "-6.54 dB",
    "custom": "some value a tagger does not know",
}


def _flac_picture():
    from mutagen.flac import Picture
    pic = Picture()
    pic.type = 3
    pic.mime = "image/png"
    pic.desc = "front"
    pic.width = pic.height = 2
    pic.depth = 24
    pic.data = COVER
    return pic


def add_existing_tags(path, fmt: str, id3_version: int = 4) -> None:
    """Give ``path`` a realistic set of tags keychords does not own.

    ``id3_version`` (3 or 4) picks the ID3v2 version for MP3, AIFF and WAV.
    """
    import mutagen
    fmt = canonical(fmt)
    kind = TAG_KIND[fmt]
    f = mutagen.File(str(path))
    if f is None:
        raise ValueError(f"mutagen does not recognise {path}")
    if f.tags is None:
        f.add_tags()
    t = f.tags
    o = OTHER_TAGS
    if kind == "id3":
        from mutagen import id3
        enc = id3.Encoding.UTF8 if id3_version == 4 else id3.Encoding.UTF16
        t.add(id3.TIT2(encoding=enc, text=[o["title"]]))
        t.add(id3.TPE1(encoding=enc, text=[o["artist"]]))
        t.add(id3.TALB(encoding=enc, text=[o["album"]]))
        t.add(id3.TDRC(encoding=enc, text=["2019-05-04"]))
        t.add(id3.TRCK(encoding=enc, text=["3/12"]))
        t.add(id3.COMM(encoding=enc, lang="eng", desc="", text=[o["comment"]]))
        t.add(id3.APIC(encoding=enc, mime="image/png", type=3, desc="front", data=COVER))
        t.add(id3.TXXX(encoding=enc, desc="REPLAYGAIN_TRACK_GAIN",
                       text=[o["replaygain_track_gain"]]))
        t.add(id3.TXXX(encoding=enc, desc="MY_CUSTOM_FIELD", text=[o["custom"]]))
        t.add(id3.PRIV(owner="org.example.unknown", data=b"\x00\x01opaque\xff"))
        if id3_version == 3:
            t.update_to_v23()
            f.save(v2_version=3)
        else:
            f.save(v2_version=4)
    elif kind == "vorbis":
        t["TITLE"] = [o["title"]]
        t["ARTIST"] = [o["artist"]]
        t["ALBUM"] = [o["album"]]
        t["DATE"] = ["2019-05-04"]
        t["TRACKNUMBER"] = ["3"]
        t["COMMENT"] = [o["comment"]]
        t["REPLAYGAIN_TRACK_GAIN"] = [o["replaygain_track_gain"]]
        t["MY_CUSTOM_FIELD"] = [o["custom"], "second value"]
        pic = _flac_picture()
        if fmt == "flac":
            f.add_picture(pic)
        else:
            t["METADATA_BLOCK_PICTURE"] = [base64.b64encode(pic.write()).decode("ascii")]
        f.save()
    elif kind == "mp4":
        from mutagen.mp4 import MP4Cover, MP4FreeForm
        t["\xa9nam"] = [o["title"]]
        t["\xa9ART"] = [o["artist"]]
        t["\xa9alb"] = [o["album"]]
        t["\xa9day"] = ["2019"]
        t["trkn"] = [(3, 12)]
        t["\xa9cmt"] = [o["comment"]]
        t["covr"] = [MP4Cover(COVER, imageformat=MP4Cover.FORMAT_PNG)]
        t["----:com.apple.iTunes:replaygain_track_gain"] = [
            MP4FreeForm(o["replaygain_track_gain"].encode("utf-8"))]
        t["----:org.example:MY_CUSTOM_FIELD"] = [MP4FreeForm(o["custom"].encode("utf-8"))]
        f.save()
    elif kind == "ape":
        from mutagen.apev2 import APEValue, BINARY
        t["Title"] = o["title"]
        t["Artist"] = o["artist"]
        t["Album"] = o["album"]
        t["Year"] = "2019"
        t["Track"] = "3/12"
        t["Comment"] = o["comment"]
        t["REPLAYGAIN_TRACK_GAIN"] = o["replaygain_track_gain"]
        t["MY_CUSTOM_FIELD"] = o["custom"]
        t["Cover Art (Front)"] = APEValue(b"cover.png\x00" + COVER, BINARY)
        f.save()
    else:  # pragma: no cover
        raise AssertionError(kind)
