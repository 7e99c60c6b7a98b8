"""Small real files of the formats beyond tests/audio_fixtures.py.

WMA, TTA and AC-3 are encoded with PyAV, Musepack with ``mpcenc`` (Debian
``musepack-tools``) when it is installed, DSF and DSDIFF are written here:
a first-order sigma-delta modulation of a chord, at 2.8224 MHz. Monkey's
Audio, TAK and OptimFROG have no encoder at hand: they appear only in the
scan and damaged-file tests. ``add_other_tags`` gives a file tags keychords
does not own, in the format's own tag kind.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import av
import numpy as np

from audio_fixtures import OTHER_TAGS, make_audio_file, tone

DSD_RATE = 2_822_400
# fmt -> (suffix, tag kind); "none": mutagen reads it but cannot tag it
EXTRA = {"wma": (".wma", "asf"), "tta": (".tta", "id3"), "mpc": (".mpc", "ape"),
         "dsf": (".dsf", "id3"), "dff": (".dff", "id3"), "ac3": (".ac3", "none")}
TAGGABLE = tuple(f for f, (_, kind) in EXTRA.items() if kind != "none")
# Extensions the scan must know, whether or not a test file can be made.
ALL_NEW_SUFFIXES = (".wma", ".ape", ".dsf", ".dff", ".mpc", ".tak", ".tta", ".ofr", ".ac3")
# The first bytes of each container (for files with no audio behind them).
MAGIC = {".ape": b"MAC \x96\x0f\x00\x00", ".tak": b"tBaK", ".ofr": b"OFR ",
         ".mpc": b"MPCK", ".tta": b"TTA1", ".dsf": b"DSD ", ".dff": b"FRM8",
         ".wma": bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"), ".ac3": b"\x0b\x77"}


def can_make(fmt: str) -> bool:
    return fmt != "mpc" or shutil.which("mpcenc") is not None


def make_extra_file(path, fmt: str, seconds: float = 4.0) -> Path:
    path = Path(path)
    if fmt in ("wma", "tta", "ac3"):
        _encode(path, {"wma": "asf", "tta": "tta", "ac3": "ac3"}[fmt],
                {"wma": "wmav2", "tta": "tta", "ac3": "ac3"}[fmt],
                44100 if fmt == "ac3" else 22050, seconds)
    elif fmt == "mpc":
        with tempfile.TemporaryDirectory() as d:
            wav = make_audio_file(Path(d) / "in.wav", "wav", seconds=seconds, sr=44100)
            subprocess.run(["mpcenc", "--silent", "--overwrite", str(wav), str(path)],
                           check=True, capture_output=True)
    elif fmt == "dsf":
        path.write_bytes(_dsf_bytes(_dsd_bits(seconds)))
    elif fmt == "dff":
        path.write_bytes(_dff_bytes(_dsd_bits(seconds)))
    else:
        raise ValueError(fmt)
    return path


def _encode(path: Path, container: str, codec: str, rate: int, seconds: float) -> None:
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="stereo")
        stream.codec_context.bit_rate = 64000
        cc = stream.codec_context
        resampler = av.AudioResampler(format=cc.format.name, layout="stereo", rate=rate,
                                      frame_size=cc.frame_size or 1024)
        src = av.AudioFrame.from_ndarray(tone(seconds, rate), format="fltp", layout="stereo")
        src.sample_rate, src.pts = rate, 0
        for frame in resampler.resample(src) + resampler.resample(None):
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def _dsd_bits(seconds: float, tone_hz=(261.63, 329.63, 392.0)) -> np.ndarray:
    """``(2, n)`` bits (0/1): an error-feedback (first-order sigma-delta) quantiser."""
    n = int(seconds * DSD_RATE) // 32768 * 32768
    x = sum(np.sin(2 * np.pi * f * np.arange(n) / DSD_RATE) for f in tone_hz) / len(tone_hz)
    return np.stack([np.diff(np.floor(np.cumsum((x * 0.4 * (1 - 0.1 * c) + 1) / 2)),
                             prepend=0.0).astype(np.uint8) for c in range(2)])


def _dsf_bytes(bits: np.ndarray, block: int = 4096) -> bytes:
    ch, n = bits.shape
    per_ch = [np.packbits(b, bitorder="little") for b in bits]    # LSB first
    data = b"".join(per_ch[c][i:i + block].tobytes()
                    for i in range(0, per_ch[0].size, block) for c in range(ch))
    fmt = struct.pack("<4sQIIIIIIQII", b"fmt ", 52, 1, 0, 2, ch, DSD_RATE, 1, n, block, 0)
    data_chunk = struct.pack("<4sQ", b"data", 12 + len(data)) + data
    return struct.pack("<4sQQQ", b"DSD ", 28, 28 + len(fmt) + len(data_chunk), 0) \
        + fmt + data_chunk


def _dff_bytes(bits: np.ndarray) -> bytes:
    def chunk(cid: bytes, body: bytes) -> bytes:
        return struct.pack(">4sQ", cid, len(body)) + body + (b"\0" if len(body) & 1 else b"")
    data = np.stack([np.packbits(b, bitorder="big") for b in bits], axis=1).tobytes()
    name = b"not compressed"
    prop = (b"SND " + chunk(b"FS  ", struct.pack(">I", DSD_RATE))
            + chunk(b"CHNL", struct.pack(">H", bits.shape[0]) + b"SLFTSRGT")
            + chunk(b"CMPR", b"DSD " + bytes([len(name)]) + name))
    body = (b"DSD " + chunk(b"FVER", struct.pack(">I", 0x01050000)) + chunk(b"PROP", prop)
            + chunk(b"DSD ", data))
    return struct.pack(">4sQ", b"FRM8", len(body)) + body


def add_other_tags(path, fmt: str) -> None:
    """Title, artist, a comment and a custom field, in ``fmt``'s tag kind."""
    import mutagen
    f = mutagen.File(str(path))
    if f.tags is None:
        f.add_tags()
    o, kind = OTHER_TAGS, EXTRA[fmt][1]
    if kind == "id3":
        from mutagen import id3
        f.tags.add(id3.TIT2(encoding=3, text=[o["title"]]))
        f.tags.add(id3.TPE1(encoding=3, text=[o["artist"]]))
        f.tags.add(id3.COMM(encoding=3, lang="eng", desc="", text=[o["comment"]]))
        f.tags.add(id3.TXXX(encoding=3, desc="MY_CUSTOM_FIELD", text=[o["custom"]]))
    else:  # APEv2 and ASF take plain text values by name
        names = {"asf": ("Title", "Author", "Description")}.get(kind, ("Title", "Artist",
                                                                       "Comment"))
        for name, value in zip(names, (o["title"], o["artist"], o["comment"])):
            f.tags[name] = [value] if kind == "asf" else value
        f.tags["MY_CUSTOM_FIELD"] = [o["custom"]] if kind == "asf" else o["custom"]
    f.save()
