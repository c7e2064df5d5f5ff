"""flaubert_np/atomic.py: a file is written whole or not at all, and replaced only when allowed."""

import pytest

from flaubert_np.atomic import atomic_write


def test_writes_bytes_or_through_a_function(tmp_path):
    path = tmp_path / "out.bin"
    atomic_write(path, b"one")
    assert path.read_bytes() == b"one"
    atomic_write(path, lambda f: f.write(b"two"))
    assert path.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_refuses_to_replace_without_overwrite(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match=r"out\.bin exists; pass --overwrite"):
        atomic_write(path, b"new", overwrite=False)
    assert path.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_a_file_that_appears_while_writing_is_kept(tmp_path):
    path = tmp_path / "out.bin"

    def slow_writer(f):
        path.write_bytes(b"someone else's")  # another process, meanwhile
        f.write(b"mine")

    with pytest.raises(FileExistsError):
        atomic_write(path, slow_writer, overwrite=False)
    assert path.read_bytes() == b"someone else's"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path, error):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")

    def failing(f):
        f.write(b"half")
        raise error

    with pytest.raises(type(error)):
        atomic_write(path, failing)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
