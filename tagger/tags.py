"""Reading and writing keychords' own tags with mutagen, safely.

keychords owns three fields and touches nothing else in a file:

- ``initial_key`` (e.g. ``Am``): ID3 ``TKEY``; Vorbis ``INITIALKEY``;
  MP4 ``----:com.apple.iTunes:initialkey``; APEv2 ``INITIALKEY``
- ``chords`` (``Am F C G``): ID3 ``TXXX:CHORDS``; Vorbis ``CHORDS``;
  MP4 ``----:com.apple.iTunes:CHORDS``; APEv2 ``CHORDS``
- ``progression`` (``vi IV I V``): ID3 ``TXXX:PROGRESSION``; Vorbis
  ``PROGRESSION``; MP4 ``----:com.apple.iTunes:PROGRESSION``; APEv2
  ``PROGRESSION``

ID3 is used for MP3, AIFF, WAV, TTA (True Audio, as mutagen tags it) and DSD
(ID3 inside DSF and DSDIFF); Vorbis comments for FLAC, Ogg Vorbis, Ogg FLAC,
Speex and Opus; MP4 for M4A (AAC and ALAC); APEv2 for WavPack, Monkey's Audio
(APE), Musepack, TAK and OptimFROG; ASF attributes (``INITIALKEY``,
``CHORDS``, ``PROGRESSION``, as beets' mediafile names them) for WMA. Formats
mutagen reads but cannot tag (AC-3, ADTS AAC) raise :class:`TagError`
naming the file and the format.

``initial_key`` uses exactly the keys beets (its ``mediafile`` package)
uses for its ``initial_key`` field, so beets and keychords read and write
the same tag. Vorbis comment and APEv2 keys are case-insensitive; ID3 TXXX
descriptions and MP4 freeform names are matched case-insensitively when
reading (as mediafile does for TXXX), and written in the case above.

Writes are atomic: the file is copied to a hidden temporary file in the
same directory (``.NAME.XXXX.keychords-tmp``), mutagen writes the tags to
the copy, the copy is fsynced and renamed over the original, and the
directory is fsynced. A crash leaves either the old file or the new one
(plus, at worst, a stale temporary file that :func:`remove_tmp_files`
deletes). While it writes, keychords holds an advisory lock on the file
and on its temporary copy (:mod:`tagger.locking`): concurrent keychords
runs never interleave on one file, a file another process has locked is
left alone ("file is locked by another process"), and a file that changed
after it was read (size, mtime or inode) is not replaced
(:class:`FileChangedError`). A file cut short (a RIFF/AIFF chunk or an Ogg
page running past its end) is never written to: mutagen would put the new
tag where readers expect the missing audio. mutagen only rewrites tag
structures; the audio data is moved, never re-encoded. The new file gets
the old one's permission bits, extended attributes and (where the process
may set it, e.g. as root) owner and group; its mtime is new. A symlink is
followed (the link stays, its target is replaced). The rename gives the
path a new inode, so other hard links to the old file keep the old content.

ID3 specifics: the tag keeps its version (v2.3 stays v2.3, v2.4 stays
v2.4; an old v2.2 tag is upgraded to v2.3, the closest version mutagen can
write; a file without an ID3v2 tag gets v2.4). Frames are loaded without
mutagen's v2.3 <-> v2.4 translation, so no other frame is converted. New
frames use UTF-8 in v2.4 and UTF-16 with BOM in v2.3 (v2.3 allows only
Latin-1 and UTF-16). An ID3v1 tag at the end of an MP3 is preserved byte
for byte.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import time
from pathlib import Path

from model_zoo.fileio import TMP_SUFFIX, atomic_write, create_tmp, fsync_file

from . import locking

FIELDS = ("initial_key", "chords", "progression")

# mutagen class name -> (our format name, tag kind)
_FORMATS = {
    "MP3": ("mp3", "id3"),
    "AIFF": ("aiff", "id3"),
    "WAVE": ("wav", "id3"),
    "FLAC": ("flac", "vorbis"),
    "OggVorbis": ("ogg", "vorbis"),
    "OggOpus": ("opus", "vorbis"),
    "MP4": ("mp4", "mp4"),
    "WavPack": ("wavpack", "ape"),
    "MonkeysAudio": ("ape", "ape"),
    "Musepack": ("mpc", "ape"),
    "TAK": ("tak", "ape"),
    "OptimFROG": ("ofr", "ape"),
    "TrueAudio": ("tta", "id3"),
    "DSF": ("dsf", "id3"),
    "DSDIFF": ("dff", "id3"),
    "ASF": ("wma", "asf"),
    "OggFLAC": ("oggflac", "vorbis"),
    "OggSpeex": ("speex", "vorbis"),
}
AUDIO_FORMATS = tuple(name for name, _ in _FORMATS.values())   # what audio_format() gives
# ID3 files whose ID3v1 trailer is kept byte for byte (mutagen would rebuild it)
_ID3V1_KINDS = {"MP3", "TrueAudio"}

ID3_KEYS = {"initial_key": ("TKEY", None), "chords": ("TXXX", "CHORDS"),
            "progression": ("TXXX", "PROGRESSION")}
VORBIS_KEYS = {"initial_key": "INITIALKEY", "chords": "CHORDS", "progression": "PROGRESSION"}
MP4_KEYS = {"initial_key": "----:com.apple.iTunes:initialkey",
            "chords": "----:com.apple.iTunes:CHORDS",
            "progression": "----:com.apple.iTunes:PROGRESSION"}
APE_KEYS = dict(VORBIS_KEYS)
ASF_KEYS = dict(VORBIS_KEYS)


class TagError(Exception):
    """Reading or writing tags failed; ``str(e)`` is a one-line reason."""

    def __init__(self, reason: str):
        super().__init__(" ".join(str(reason).split()))


class FileChangedError(TagError):
    """The file is no longer the one that was read or analysed; nothing was
    written (retry with fresh results)."""


# --- format detection ----------------------------------------------------------

def _mutagen_kinds():
    """Every file type mutagen.File considers, in mutagen's own order."""
    from mutagen.aac import AAC
    from mutagen.ac3 import AC3
    from mutagen.aiff import AIFF
    from mutagen.apev2 import APEv2File
    from mutagen.asf import ASF
    from mutagen.dsdiff import DSDIFF
    from mutagen.dsf import DSF
    from mutagen.flac import FLAC
    from mutagen.id3 import ID3FileType
    from mutagen.monkeysaudio import MonkeysAudio
    from mutagen.mp3 import MP3
    from mutagen.mp4 import MP4
    from mutagen.musepack import Musepack
    from mutagen.oggflac import OggFLAC
    from mutagen.oggopus import OggOpus
    from mutagen.oggspeex import OggSpeex
    from mutagen.oggtheora import OggTheora
    from mutagen.oggvorbis import OggVorbis
    from mutagen.optimfrog import OptimFROG
    from mutagen.smf import SMF
    from mutagen.tak import TAK
    from mutagen.trueaudio import TrueAudio
    from mutagen.wave import WAVE
    from mutagen.wavpack import WavPack
    return [MP3, TrueAudio, OggTheora, OggSpeex, OggVorbis, OggFLAC, FLAC, AIFF,
            APEv2File, MP4, ID3FileType, WavPack, Musepack, MonkeysAudio, OptimFROG,
            ASF, OggOpus, AAC, AC3, SMF, TAK, DSF, DSDIFF, WAVE]


def _best_by_content(fh, header: bytes, kinds):
    scores = []
    for kind in kinds:
        try:
            fh.seek(0)
            score = kind.score("", fh, header)  # no file name: content only
        except Exception:
            score = 0
        scores.append((score, kind.__name__, kind))
    scores.sort(key=lambda s: (s[0], s[1]))
    score, _, kind = scores[-1]
    return kind if score > 0 else None


def _id3v2_size(header: bytes) -> int | None:
    """Total size of an ID3v2 tag starting ``header``, None if there is none."""
    if len(header) < 10 or header[:3] != b"ID3":
        return None
    size = 0
    for b in header[6:10]:
        if b & 0x80:
            return None
        size = (size << 7) | b
    return 10 + size + (10 if header[5] & 0x10 else 0)


def _candidate_kinds(path: str) -> list[tuple[type, bool]]:
    """mutagen file types to try for ``path``, best first, each with whether
    the file's content (rather than its name) suggested it.

    Detection is by content (mutagen's score functions called without the
    file name, so a renamed file is still recognised), looking behind a
    leading ID3v2 tag too (FLAC files sometimes carry one); mutagen's usual
    name-assisted guess comes last, for content-less cases such as an MP3
    that starts with junk.
    """
    kinds = _mutagen_kinds()
    out: list[tuple[type, bool]] = []
    with open(path, "rb") as fh:
        header = fh.read(128)
        id3_size = _id3v2_size(header)
        if id3_size is not None:
            fh.seek(id3_size)
            if fh.read(4) == b"fLaC":
                from mutagen.flac import FLAC
                out.append((FLAC, True))
        best = _best_by_content(fh, header, kinds)
        if best is not None and best not in [k for k, _ in out]:
            out.append((best, True))
        scores = []
        for kind in kinds:
            try:
                fh.seek(0)
                scores.append((kind.score(os.fspath(path), fh, header), kind.__name__, kind))
            except Exception:
                pass
        scores.sort(key=lambda s: (s[0], s[1]))
        if scores and scores[-1][0] > 0 and scores[-1][2] not in [k for k, _ in out]:
            out.append((scores[-1][2], False))
    return out


def _load(path: str, kind=None):
    """``(mutagen file object, class)``; raises TagError if nothing loads it."""
    kinds = [(kind, True)] if kind is not None else _candidate_kinds(path)
    if not kinds:
        raise TagError(f"not an audio file mutagen recognises: {path}")
    first_error = None
    for k, _ in kinds:
        try:
            f = k(path)
        except Exception as e:  # malformed data can make mutagen raise anything
            if first_error is None:
                first_error = e
            continue
        return f, k
    reason = _reason(first_error) if first_error is not None else "unknown"
    if not any(by_content for _, by_content in kinds):
        raise TagError(f"not an audio file mutagen recognises: {path} "
                       f"(named like {kinds[0][0].__name__}, but {reason})")
    raise TagError(f"cannot read {path} as {kinds[0][0].__name__}: {reason}")


def _reason(e: BaseException) -> str:
    if isinstance(e, TagError):
        return str(e)
    inner = e
    # mutagen wraps IOErrors; unwrap for a clearer message
    while getattr(inner, "__cause__", None) is not None and not isinstance(inner, OSError):
        inner = inner.__cause__
    if isinstance(inner, PermissionError):
        return f"permission denied ({inner.filename or ''})".replace(" ()", "")
    if isinstance(inner, OSError) and inner.errno == errno.ENOSPC:
        return "no space left on device"
    text = str(e) or type(e).__name__
    return " ".join(f"{type(e).__name__}: {text}".split())


def audio_format(path) -> str | None:
    """One of :data:`AUDIO_FORMATS` (``mp3``, ``flac``, ``wma``, ``dsf``, ...),
    detected from the file's content; None when mutagen does not recognise it
    as a format keychords tags (also for unreadable files)."""
    try:
        f, _ = _load(os.fspath(path))
    except (TagError, OSError):
        return None
    fmt = _FORMATS.get(type(f).__name__)
    return fmt[0] if fmt else None


def _open_supported(path: str):
    try:
        f, kind = _load(path)
    except OSError as e:
        raise TagError(f"cannot read {path}: {_reason(e)}") from e
    name = type(f).__name__
    if name not in _FORMATS:
        raise TagError(f"cannot be tagged: mutagen writes no tags into {name} files")
    return f, kind, _FORMATS[name][1]


# --- reading -------------------------------------------------------------------

def _first_text(values) -> str | None:
    for v in values or []:
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        v = str(v).strip().strip("\x00").strip()
        if v:
            return v
    return None


def _get_fields(tags, kind: str) -> dict[str, str]:
    out: dict[str, str] = {}
    if tags is None:
        return out
    if kind == "id3":
        for field, (fid, desc) in ID3_KEYS.items():
            frames = tags.getall(fid)
            if desc is not None:
                frames = [fr for fr in frames if str(fr.desc).upper() == desc]
            for fr in frames:
                v = _first_text(list(fr.text))
                if v is not None:
                    out[field] = v
                    break
    elif kind == "vorbis":
        for field, key in VORBIS_KEYS.items():
            v = _first_text(tags.get(key, []))
            if v is not None:
                out[field] = v
    elif kind in ("mp4", "asf"):
        lower = {k.lower(): k for k in tags.keys()}
        for field, key in (MP4_KEYS if kind == "mp4" else ASF_KEYS).items():
            real = key if key in tags else lower.get(key.lower())
            if real is not None:
                v = _first_text(list(tags[real]))
                if v is not None:
                    out[field] = v
    elif kind == "ape":
        for field, key in APE_KEYS.items():
            if key in tags:
                value = tags[key]
                if getattr(value, "kind", None) == 0:  # TEXT (possibly \0-separated)
                    v = _first_text(list(value))
                    if v is not None:
                        out[field] = v
    return out


def read_tags(path) -> dict[str, str]:
    """keychords' fields present in ``path`` (keys among :data:`FIELDS`).

    Any problem (not audio, unsupported format, malformed tags, unreadable
    file) raises :class:`TagError`; nothing else escapes.
    """
    path = os.fspath(path)
    try:
        f, _, kind = _open_supported(path)
        return _get_fields(f.tags, kind)
    except TagError:
        raise
    except Exception as e:  # malformed data can make mutagen raise anything
        raise TagError(f"cannot read tags of {path}: {_reason(e)}") from e


# --- writing -------------------------------------------------------------------

def _set_id3(tags, field: str, value: str, v2_version: int) -> None:
    from mutagen import id3
    fid, desc = ID3_KEYS[field]
    enc = id3.Encoding.UTF8 if v2_version == 4 else id3.Encoding.UTF16
    if desc is None:
        tags.delall(fid)
        tags.add(id3.Frames[fid](encoding=enc, text=[value]))
    else:
        for fr in list(tags.getall(fid)):
            if str(fr.desc).upper() == desc:
                del tags[fr.HashKey]
        tags.add(id3.TXXX(encoding=enc, desc=desc, text=[value]))


def _set_mp4(tags, field: str, value: str) -> None:
    from mutagen.mp4 import AtomDataType, MP4FreeForm
    key = MP4_KEYS[field]
    for k in [k for k in tags.keys() if k.lower() == key.lower()]:
        del tags[k]
    tags[key] = [MP4FreeForm(value.encode("utf-8"), dataformat=AtomDataType.UTF8)]


def _set_asf(tags, field: str, value: str) -> None:
    key = ASF_KEYS[field]
    for k in [k for k in tags.keys() if k.lower() == key.lower()]:
        del tags[k]
    tags[key] = [value]


def _apply(f, kind: str, todo: dict[str, str]) -> dict:
    """Put ``todo`` into the loaded mutagen file ``f``; the kwargs for save()."""
    if kind == "id3":
        if f.tags is None:
            f.add_tags()
            version = 4
        else:
            version = 3 if f.tags.version[:2] <= (2, 3) else 4
        for field, value in todo.items():
            _set_id3(f.tags, field, value, version)
        return {"v2_version": version}
    if f.tags is None:
        f.add_tags()
    for field, value in todo.items():
        if kind == "vorbis":
            f.tags[VORBIS_KEYS[field]] = [value]
        elif kind == "mp4":
            _set_mp4(f.tags, field, value)
        elif kind == "ape":
            f.tags[APE_KEYS[field]] = value
        elif kind == "asf":
            _set_asf(f.tags, field, value)
    return {}


def _load_for_write(tmp: str, kind_cls, kind: str):
    if kind != "id3":
        return kind_cls(tmp)
    # No v2.3 <-> v2.4 translation: every other frame stays as found. ID3v1
    # is left out of the tag we save (it is kept as raw bytes instead).
    f = kind_cls(tmp, translate=False, load_v1=False)
    if f.tags is not None and f.tags.version[:2] < (2, 3):
        # mutagen cannot write v2.2; upgrade (translated) to v2.3.
        f = kind_cls(tmp, translate=True, v2_version=3, load_v1=False)
    return f


def _save(f, kind: str, kind_name: str, tmp: str, save_kwargs: dict) -> None:
    if kind_name in _ID3V1_KINDS:
        from mutagen.id3._id3v1 import find_id3v1
        with open(tmp, "rb") as fh:
            v1_tag, offset = find_id3v1(fh)
            v1_raw = b""
            if v1_tag is not None and offset < 0:
                fh.seek(offset, 2)
                v1_raw = fh.read()
        f.save(v1=0, **save_kwargs)          # removes the old v1 trailer ...
        if v1_raw:
            with open(tmp, "ab") as fh:      # ... which goes back byte for byte
                fh.write(v1_raw)
    elif kind_name == "FLAC":
        f.save(deleteid3=False)
    else:
        f.save(**save_kwargs)


def _copy_metadata(src_stat: os.stat_result, src: str, dst: str) -> None:
    """Owner (when allowed), permission bits and extended attributes."""
    if hasattr(os, "chown"):
        dst_stat = os.stat(dst)
        if (dst_stat.st_uid, dst_stat.st_gid) != (src_stat.st_uid, src_stat.st_gid):
            try:
                os.chown(dst, src_stat.st_uid, src_stat.st_gid)
            except OSError:
                try:
                    os.chown(dst, -1, src_stat.st_gid)
                except OSError:
                    pass
    os.chmod(dst, stat.S_IMODE(src_stat.st_mode))
    if hasattr(os, "listxattr"):
        try:
            names = os.listxattr(src)
        except OSError:
            names = []
        for name in names:
            try:
                os.setxattr(dst, name, os.getxattr(src, name))
            except OSError:
                pass


def _stamp(st: os.stat_result) -> tuple[int, int]:
    return st.st_size, st.st_mtime_ns


def file_stamp(path) -> tuple[int, int]:
    """``(size, mtime_ns)`` of ``path`` (symlinks followed): what
    :func:`write_tags`' ``expect`` compares against."""
    return _stamp(os.stat(path))


def _clean(values: dict[str, str]) -> dict[str, str]:
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise ValueError(f"not keychords fields: {', '.join(sorted(unknown))}")
    return {k: str(v).strip() for k, v in values.items() if v is not None and str(v).strip()}


def _todo(existing: dict[str, str], wanted: dict[str, str], overwrite: bool) -> dict[str, str]:
    return {k: v for k, v in wanted.items()
            if existing.get(k) != v and (overwrite or k not in existing)}


def tags_to_write(path, values: dict[str, str], overwrite: bool = False) -> dict[str, str]:
    """What :func:`write_tags` would write to ``path`` now (``{}``: the file
    already carries these values, or keeps its own). Raises :class:`TagError`."""
    return _todo(read_tags(path), _clean(values), overwrite)


def write_tags(path, values: dict[str, str], overwrite: bool = False,
               expect: tuple[int, int] | None = None) -> dict[str, str]:
    """Write keychords' fields to ``path``; returns what was actually written.

    Only keys of :data:`FIELDS` are accepted (ValueError otherwise); empty or
    None values are ignored. A field already present is kept unless
    ``overwrite``; a value equal to the one in the file is not rewritten.
    When nothing is left to write, the file is not touched and ``{}`` is
    returned. ``expect=(size, mtime_ns)`` refuses to write when the file is
    no longer the one that was analysed, and a file that changes while it is
    being written is not replaced either (both :class:`FileChangedError`). A
    file another process has locked is waited for up to
    :data:`tagger.locking.LOCK_WAIT` seconds. Any failure raises
    :class:`TagError` and leaves the original file as it was.
    """
    wanted = _clean(values)
    display = os.fspath(path)
    real = os.path.realpath(display)  # a symlink keeps pointing at the tagged file

    try:
        st = os.stat(real)
    except OSError as e:
        raise TagError(f"cannot write {display}: {_reason(e)}") from e
    if not stat.S_ISREG(st.st_mode):
        raise TagError(f"not a regular file: {display}")
    if expect is not None and tuple(expect) != _stamp(st):
        raise FileChangedError(f"file changed since it was analysed: {display}")
    if not wanted:
        return {}

    try:
        f, kind_cls, kind = _open_supported(real)
        existing = _get_fields(f.tags, kind)
    except TagError:
        raise
    except Exception as e:
        raise TagError(f"cannot read tags of {display}: {_reason(e)}") from e
    todo = _todo(existing, wanted, overwrite)
    if not todo:
        return {}

    # Root bypasses permission bits; a file nobody may write is still
    # treated as read-only on purpose.
    if not os.access(real, os.W_OK) or not st.st_mode & 0o222:
        raise TagError("permission denied: the file is read-only")  # callers name it
    # A RIFF/AIFF chunk or Ogg page cut off by the end of the file: mutagen
    # would append its tag after it, inside what readers take for audio.
    from .decode import incomplete_reason
    cut = incomplete_reason(real, ratio=1.0)
    if cut:
        raise TagError(f"{cut}; not written: {display}")

    try:
        with locking.locked(real) as lock:
            # Held from here to the rename (see tagger.locking). The lock is
            # on the file that was read, and it is still that file:
            now = os.stat(real)
            if os.fstat(lock).st_ino != st.st_ino or now.st_ino != st.st_ino \
                    or _stamp(now) != _stamp(st):
                raise FileChangedError(f"file changed while its tags were being written: "
                                       f"{display}")
            atomic_write(real, lambda tmp: _tagged_copy(real, tmp, st, kind_cls, kind, todo,
                                                        display),
                         keep_mode=False, open_tmp=_locked_tmp)
    except TagError:
        raise
    except locking.Locked as e:
        raise TagError(f"{e}: {display}") from None
    except PermissionError as e:
        raise TagError(f"permission denied: cannot write {display} ({_reason(e)})") from e
    except Exception as e:
        raise TagError(f"cannot write tags to {display}: {_reason(e)}") from e
    return todo


def _tagged_copy(real: str, tmp: str, st: os.stat_result, kind_cls, kind: str,
                 todo: dict[str, str], display: str) -> None:
    """Fill ``tmp`` with a copy of ``real`` carrying ``todo``, verified and
    given ``real``'s metadata; FileChangedError when ``real`` changes meanwhile."""
    shutil.copyfile(real, tmp)
    if _stamp(os.stat(real)) != _stamp(st):
        raise FileChangedError(f"file changed while it was being copied: {display}")
    g = _load_for_write(tmp, kind_cls, kind)
    _save(g, kind, kind_cls.__name__, tmp, _apply(g, kind, todo))
    # The data now, so that atomic_write's fsync after the metadata copy is
    # short and the last check below stays right before the rename.
    fsync_file(tmp)
    # Sanity check before replacing anything: the copy must still load as
    # the same format and carry the values just written.
    check, _ = _load(tmp, kind_cls)
    got = _get_fields(check.tags, kind)
    bad = [k for k, v in todo.items() if got.get(k) != v]
    if bad:
        raise TagError(f"verification failed after writing {', '.join(bad)}: {display}")
    _copy_metadata(st, real, tmp)
    now = os.stat(real)
    if _stamp(now) != _stamp(st) or now.st_ino != st.st_ino:
        raise FileChangedError(f"file changed while its tags were being written: {display}")


def _locked_tmp(directory: str, base: str) -> tuple[int, str]:
    """A new temporary file for ``base``, locked against :func:`remove_tmp_files`
    of a concurrent run (which may have taken it before the lock: then retry)."""
    for _ in range(10):
        try:
            # Private until _copy_metadata gives it the original's mode.
            fd, tmp = create_tmp(directory, base, mode=0o600)
        except PermissionError as e:
            raise TagError(f"permission denied: cannot create a temporary file in "
                           f"{directory}") from e
        except OSError as e:
            if e.errno == errno.ENAMETOOLONG:
                raise TagError(f"path too long: no room for a temporary file in "
                               f"{directory}") from e
            raise
        try:
            locking.lock_fd(fd)
            if os.stat(tmp).st_ino == os.fstat(fd).st_ino:
                return fd, tmp
        except (OSError, locking.Locked):
            pass
        os.close(fd)
    raise TagError(f"cannot create a temporary file in {directory}")


def remove_tmp_files(directory, recursive: bool = False, min_age: float = 0.0) -> list[str]:
    """Delete stale ``.*.keychords-tmp`` files (left by a crash) in ``directory``.

    A temporary file another keychords process is still writing is locked
    (:mod:`tagger.locking`) and kept; one left by a killed process is not.
    ``min_age`` (seconds) also spares files modified more recently. Returns
    the paths removed. Errors on single files are ignored.
    """
    removed: list[str] = []
    root = Path(directory)
    if not root.is_dir():
        return removed
    pattern = "**/.*" + TMP_SUFFIX if recursive else ".*" + TMP_SUFFIX
    now = time.time()
    for p in root.glob(pattern):
        try:
            st = p.lstat()
            if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < min_age:
                continue
            if locking.remove_if_unlocked(str(p)):
                removed.append(str(p))
        except OSError:
            continue
    return removed
