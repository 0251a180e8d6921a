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
