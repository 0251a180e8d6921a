"""Paths a manifest or a host may name on the board: every component checked, symlinks resolved to the end."""
from __future__ import annotations

import pytest

from edgepad.deploy.board_ops import inside
from edgepad.deploy.manifest import check_relative_path
from edgepad.errors import InputFileError


@pytest.mark.parametrize("path", ["..", "../x", "a/..", "a/../b", ".", "./a", "a/./b", "a//b", "/etc/passwd", "a/",
                                  "", "a\\b", "a\nb"])
def test_manifest_paths_that_leave_the_bundle_are_refused(path):
    with pytest.raises(InputFileError, match="not a plain relative path"):
        check_relative_path(path, "manifest.json")


@pytest.mark.parametrize("path", ["manifest.json", "models/classifier/model.onnx", ".hidden/x", "a..b/c"])
def test_plain_relative_paths_pass(path):
    assert check_relative_path(path, "manifest.json") == path


def test_inside_refuses_dot_dot_and_links_that_resolve_outside(tmp_path):
    root = tmp_path / "root"
    (root / "releases" / "r1").mkdir(parents=True)
    outside = tmp_path / "secret"
    outside.write_text("x")
    (root / "releases" / "r1" / "link").symlink_to(outside)  # the last component is the link
    (root / "releases" / "r1" / "inner").symlink_to(root / "releases" / "r1")

    assert inside(str(root), "releases", "r1", "model.onnx") == str(root / "releases" / "r1" / "model.onnx")
    assert inside(str(root), "releases/r1/inner/x")  # a link that stays inside is fine
    for parts in [("..",), ("releases", ".."), ("releases/../..",), ("/etc",), ("releases", "r1", "link"), ("",)]:
        with pytest.raises(ValueError, match="refusing"):
            inside(str(root), *parts)


def test_release_and_current_are_flushed_before_they_are_published(tmp_path, monkeypatch):
    """Power can go right after a deploy: every file and folder is fsync'ed before the rename that publishes the
    release and before the symlink swap, and the parent folder after each (the order is what matters)."""
    import os

    from edgepad.deploy import board_ops

    root = tmp_path / "board"
    staging = root / "releases" / ".partial-r2"
    (staging / "models").mkdir(parents=True)
    (staging / "models" / "model.onnx").write_bytes(b"weights")
    (staging / "manifest.json").write_text("{}")
    events = []
    real_fsync, real_rename, real_replace = os.fsync, os.rename, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                 real_fsync(fd)))
    monkeypatch.setattr(os, "rename", lambda a, b: (events.append(("rename", str(b))), real_rename(a, b)))
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", str(b))), real_replace(a, b)))

    board_ops.op_finalize({"root": str(root), "staging": ".partial-r2", "release": "r2"})
    board_ops.op_switch({"root": str(root), "release": "r2"})

    names = [(kind, os.path.relpath(path, root)) for kind, path in events]
    rename = names.index(("rename", "releases/r2"))
    flushed_before = {path for kind, path in names[:rename] if kind == "fsync"}
    assert flushed_before >= {"releases/.partial-r2/models/model.onnx", "releases/.partial-r2/manifest.json",
                              "releases/.partial-r2/models", "releases/.partial-r2"}
    assert ("fsync", "releases") in names[rename + 1:]
    swap = names.index(("replace", "current"))
    assert ("fsync", ".") in names[swap + 1:]
    assert (root / "current").resolve() == (root / "releases" / "r2").resolve()
