"""flaubert_np/files.py: paths inside a model folder, the Hugging Face cache's links included."""

import os
from pathlib import Path

import pytest

from flaubert_np.files import ModelFileError, inside


def _hub_file(cache: Path, repo: str, name: str) -> Path:
    """cache/models--<repo>/snapshots/rev/<name> -> ../../blobs/<name>; returns the snapshot."""
    folder = cache / f"models--{repo}"
    (folder / "blobs").mkdir(parents=True)
    (folder / "blobs" / name).write_text("x")
    snapshot = folder / "snapshots" / "rev"
    snapshot.mkdir(parents=True)
    (snapshot / name).symlink_to(os.path.relpath(folder / "blobs" / name, snapshot))
    return snapshot


def test_a_plain_file_and_a_link_inside_the_folder(tmp_path):
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "b.json").symlink_to("a.json")
    assert inside(tmp_path, "a.json", "shard") == tmp_path / "a.json"
    assert inside(tmp_path, "b.json", "shard") == tmp_path / "b.json"
    assert inside(tmp_path, "missing.json", "shard") == tmp_path / "missing.json"


@pytest.mark.parametrize("relative", ["/etc/passwd", "../x", "sub/../../x"])
def test_paths_that_leave_the_folder_are_refused(tmp_path, relative):
    with pytest.raises(ModelFileError, match="is not inside the model folder"):
        inside(tmp_path, relative, "shard")


def test_a_link_out_of_the_folder_is_refused(tmp_path):
    (tmp_path / "outside.txt").write_text("secret")
    model = tmp_path / "model"
    model.mkdir()
    (model / "shard.safetensors").symlink_to(tmp_path / "outside.txt")
    with pytest.raises(ModelFileError, match=r"shard is a link to .*outside\.txt, outside"):
        inside(model, "shard.safetensors", "shard")


@pytest.mark.parametrize("cache", ["hub", "snapshots/hub", "snapshots/models--x--y/snapshots/h"])
def test_hub_cache_links_into_the_repos_blobs_wherever_the_cache_is(tmp_path, cache):
    """The repo's own snapshots folder counts, even under folders named like the cache's."""
    snapshot = _hub_file(tmp_path / cache, "org--name", "w.safetensors")
    assert inside(snapshot, "w.safetensors", "shard") == snapshot / "w.safetensors"


def test_hub_cache_links_into_another_repos_blobs_are_refused(tmp_path):
    snapshot = _hub_file(tmp_path / "hub", "org--name", "w.safetensors")
    other = _hub_file(tmp_path / "hub", "org--other", "v.safetensors")
    (snapshot / "v.safetensors").symlink_to(other / "v.safetensors")
    with pytest.raises(ModelFileError, match="outside the model folder"):
        inside(snapshot, "v.safetensors", "shard")
