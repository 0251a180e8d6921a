"""One set of image files for every part of edgepad: what `edgepad run` reads, calibration and crops read too."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgepad.runtime.frames import IMAGE_SUFFIXES, read_image


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """The same small picture in every format OpenCV writes here, under live/subject/video/ as crops lie."""
    folder = tmp_path_factory.mktemp("images")
    video = folder / "live" / "subject" / "video"
    video.mkdir(parents=True)
    image = (np.arange(32 * 32 * 3) % 251).astype(np.uint8).reshape(32, 32, 3)
    for suffix in sorted(IMAGE_SUFFIXES):
        picture = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if suffix == ".pgm" else image
        assert cv2.imwrite(str(video / f"frame{suffix.upper() if suffix == '.jpg' else suffix}"), picture), suffix
    (video / "notes.txt").write_text("not an image")
    return folder


def test_every_listed_format_is_one_opencv_reads(image_folder):
    files = sorted(p for p in image_folder.rglob("frame*"))
    assert len(files) == len(IMAGE_SUFFIXES)
    for path in files:
        assert read_image(str(path)).shape == (32, 32, 3), path


def test_calibration_and_crops_take_what_edgepad_run_takes(image_folder):
    from edgepad.convert.parity_inputs import image_files
    from edgepad.data.crops import list_crops

    expected = sorted(p for p in image_folder.rglob("frame*"))
    assert image_files(image_folder, "--calibration") == expected
    assert sorted(c.path for c in list_crops(image_folder)) == expected
