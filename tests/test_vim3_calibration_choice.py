"""Calibration images are drawn from every video folder of an extract, not from the first video only."""
from pathlib import Path

from edgepad.convert.heldout import spread_over_folders


def test_calibration_takes_images_from_every_folder_in_turn(tmp_path):
    files = [Path(f"crops/video{v}/{frame:04d}.png") for v in range(3) for frame in range(10)]
    chosen = spread_over_folders(files, 6)
    assert sorted({p.parent.name for p in chosen}) == ["video0", "video1", "video2"]
    assert [p.parent.name for p in chosen].count("video0") == 2


def test_calibration_count_larger_than_the_folder_takes_everything_once():
    files = [Path(f"a/{i}.png") for i in range(3)] + [Path("b/0.png")]
    assert sorted(spread_over_folders(files, 100)) == sorted(files)
