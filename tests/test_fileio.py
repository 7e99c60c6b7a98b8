"""model_zoo.fileio: atomic replacement through a temporary file."""

import os

import pytest

from model_zoo.fileio import TMP_SUFFIX, atomic_write, create_tmp


def test_replaces_and_leaves_no_temp(tmp_path):
    dest = tmp_path / "a.bin"
    dest.write_bytes(b"old")
    seen = []

    def write(tmp):
        seen.append(os.path.basename(tmp))
        with open(tmp, "wb") as f:
            f.write(b"new")
    atomic_write(dest, write)
    assert dest.read_bytes() == b"new"
    assert seen[0].startswith(".a.bin.") and seen[0].endswith(TMP_SUFFIX)
    assert os.listdir(tmp_path) == ["a.bin"]


@pytest.mark.parametrize("exc", [ValueError("bad data"), KeyboardInterrupt()])
def test_failing_write_keeps_the_old_file_and_no_temp(tmp_path, exc):
    dest = tmp_path / "a.json"
    dest.write_text("old")

    def write(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise exc
    with pytest.raises(type(exc)):
        atomic_write(dest, write)
    assert dest.read_text() == "old"
    assert os.listdir(tmp_path) == ["a.json"]


def test_modes(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "new", lambda tmp: None)
        kept = tmp_path / "kept"
        kept.write_text("x")
        os.chmod(kept, 0o604)
        atomic_write(kept, lambda tmp: None)
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "new").st_mode & 0o777 == 0o640
    assert os.stat(kept).st_mode & 0o777 == 0o604


def test_temp_name_is_cut_to_fit(tmp_path):
    fd, tmp = create_tmp(tmp_path, "x" * 300)
    os.close(fd)
    name = os.path.basename(tmp)
    assert name.startswith("." + "x" * 64 + ".") and name.endswith(TMP_SUFFIX)
    assert len(name) == 1 + 64 + 1 + 8 + len(TMP_SUFFIX)


def test_custom_temp_opener_and_its_descriptor_are_closed(tmp_path):
    opened = []

    def open_tmp(directory, base):
        fd, tmp = create_tmp(directory, base, mode=0o600)
        opened.append(fd)
        return fd, tmp
    atomic_write(tmp_path / "f", lambda tmp: None, open_tmp=open_tmp)
    with pytest.raises(OSError):
        os.fstat(opened[0])
