"""Find audio files: by extension, and by content for files named otherwise."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# Every audio format FFmpeg decodes and mutagen reads (tagger/tags.py says
# which it can tag; AC-3 and ADTS AAC it cannot, and those files say so).
AUDIO_EXTENSIONS = {
    ".mp3", ".mp2", ".mpa", ".flac", ".ogg", ".oga", ".opus", ".spx", ".m4a", ".mp4",
    ".m4b", ".m4r", ".aac", ".alac", ".aif", ".aiff", ".aifc", ".wav", ".wave", ".wv",
    ".wma", ".asf", ".ape", ".dsf", ".dff", ".mpc", ".mp+", ".mpp", ".tak", ".tta",
    ".ofr", ".ofs", ".ac3", ".eac3",
}
# Leading bytes of containers that have no ID3/RIFF/FORM/ftyp start.
_MAGIC = (b"fLaC", b"OggS", b"wvpk", b"MAC ", b"DSD ", b"FRM8", b"MPCK", b"MP+",
          b"tBaK", b"TTA1", b"OFR ", bytes.fromhex("3026b2758e66cf11"))
# Never audio: skipped without reading them.
_NOT_AUDIO = {
    ".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".txt", ".nfo", ".cue", ".log",
    ".pdf", ".m3u", ".m3u8", ".pls", ".lab", ".json", ".jams", ".key", ".db", ".ini",
    ".html", ".xml", ".md", ".sfv", ".md5", ".accurip", ".keychords-tmp",
}


@dataclass
class Skipped:
    path: str
    reason: str


def sniff_audio(path: str | os.PathLike) -> bool:
    """Whether the file starts like a container keychords tags."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    if len(head) < 4:
        return False
    if head[:3] == b"ID3" or head.startswith(_MAGIC):
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return True
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return True
    if head[4:8] == b"ftyp":
        return True
    if head[:2] == b"\x0b\x77":  # AC-3 / E-AC-3 sync word
        return True
    # MPEG audio frame sync (an MP3 without an ID3 tag), ADTS AAC
    return head[0] == 0xFF and (head[1] & 0xE0) == 0xE0


def is_audio_candidate(path: Path) -> bool:
    ext = path.suffix.lower()
    if ext in AUDIO_EXTENSIONS:
        return True
    if ext in _NOT_AUDIO:
        return False
    return sniff_audio(path)


def scan(paths: Iterable[str | os.PathLike], skipped: list[Skipped] | None = None) -> list[str]:
    """Audio files under ``paths`` (files or folders, recursive), sorted.

    Hidden files and folders (``.name``), broken symbolic links and folders
    that cannot be listed (no permission, a path longer than the system
    allows) are left out, each with a note appended to ``skipped``.
    Explicitly named files are always kept (decoding reports what is wrong
    with them). Each file is listed once, however it was reached.
    """
    notes = skipped if skipped is not None else []
    found: dict[str, None] = {}
    for p in paths:
        path = Path(p)
        if path.is_symlink() and not path.exists():
            notes.append(Skipped(str(path), "broken symbolic link"))
            continue
        if not path.exists():
            notes.append(Skipped(str(path), "no such file or folder"))
            continue
        if not path.is_dir():
            found.setdefault(str(path), None)
            continue
        def unreadable(err: OSError) -> None:  # e.g. no permission, path too long
            notes.append(Skipped(os.fsdecode(err.filename or path),
                                 f"cannot read folder ({err.strerror or err})"))
        for root, dirs, files in os.walk(path, onerror=unreadable, followlinks=False):
            hidden = sorted(d for d in dirs if d.startswith("."))
            for d in hidden:
                notes.append(Skipped(os.path.join(root, d), "hidden folder"))
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                full = Path(root) / name
                if name.startswith("."):
                    if not name.endswith(".keychords-tmp"):
                        notes.append(Skipped(str(full), "hidden file"))
                    continue
                if full.is_symlink() and not full.exists():
                    notes.append(Skipped(str(full), "broken symbolic link"))
                    continue
                if is_audio_candidate(full):
                    found.setdefault(str(full), None)
    return sorted(found)
