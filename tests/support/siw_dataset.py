"""A tiny Spoof-in-the-Wild dataset made from real face photos, as real video files with `.face` box files.

Live videos are the photo's face moving a little, with sensor noise. Spoofs imitate what a camera sees of an
attack: a print (blur, paper colour cast, lower contrast, halftone grain) or a replay on a screen (moiré,
blue cast, gamma), both held by a hand that moves. The `.face` files carry each defect the seed found in SiW.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

FRAME_SIZE = 160
FACE_WIDTH = 72  # px of the face inside a frame
FOURCC = "mp4v"

# Face boxes (x, y, w, h) in the fixture photos, as the `mtcnn` package finds them at min_face_size=20.
PHOTO_FACES = [
    ("astronaut.png", (182, 64, 83, 107)),
    ("t1.jpg", (911, 62, 101, 136)),
    ("t1.jpg", (743, 343, 99, 132)),
    ("Tom_Hanks_54745.png", (1, 0, 82, 111)),
    ("t1.jpg", (54, 266, 110, 129)),
    ("t1.jpg", (1134, 272, 93, 125)),
    ("t1.jpg", (269, 152, 96, 117)),
    ("t1.jpg", (466, 265, 103, 140)),
]
TYPE_LIVE, TYPE_PRINT, TYPE_REPLAY = "1", "2", "3"


@dataclass
class BuiltDataset:
    root: Path
    videos: dict[str, Path]  # video name -> file
    frames_per_video: int
    # the defects written on purpose, by video name
    bad_line_video: str
    zero_box_video: str
    short_face_video: str
    short_face_missing: int
    m_mov_video: str
    unreadable_video: str


def subject_scene(faces_dir: Path, index: int, frame_size: int = FRAME_SIZE,
                  face_width: int = FACE_WIDTH) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A frame_size square picture of subject `index` and its face box (x1, y1, x2, y2) in it."""
    name, (x, y, w, h) = PHOTO_FACES[index]
    photo = cv2.imread(str(faces_dir / name))
    scale = face_width / w
    cx, cy = x + w / 2, y + h / 2
    # Place the face centre at the frame centre; pad the photo so any context outside it is grey.
    matrix = np.float32([[scale, 0, frame_size / 2 - scale * cx], [0, scale, frame_size / 2 - scale * cy]])
    scene = cv2.warpAffine(photo, matrix, (frame_size, frame_size), flags=cv2.INTER_AREA,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=(128, 128, 128))
    fw, fh = w * scale, h * scale
    box = (int(frame_size / 2 - fw / 2), int(frame_size / 2 - fh / 2), int(frame_size / 2 + fw / 2),
           int(frame_size / 2 + fh / 2))
    return scene, box


def _shift(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, matrix, image.shape[1::-1], borderMode=cv2.BORDER_REFLECT)


def _print_attack(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    blurred = cv2.GaussianBlur(image, (5, 5), 1.2).astype(np.float32)
    paper = blurred * 0.75 + 50 + np.float32([-12, 8, 18])  # lower contrast, warm (BGR) paper cast
    grain = rng.normal(0, 6, image.shape[:2])[..., None]
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    halftone = 6 * np.sign(np.sin(xx * 1.9) * np.sin(yy * 1.9))[..., None]
    return np.clip(paper + grain + halftone, 0, 255).astype(np.uint8)


def _replay_attack(image: np.ndarray, phase: float) -> np.ndarray:
    screen = 255 * (image.astype(np.float32) / 255) ** 0.8 + np.float32([20, 4, -14])  # gamma, cold (BGR) cast
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    moire = 14 * np.sin(0.9 * xx + 0.35 * yy + phase) * np.sin(0.2 * xx - 0.85 * yy)
    return np.clip(screen + moire[..., None], 0, 255).astype(np.uint8)


def video_frames(scene: np.ndarray, box, kind: str, count: int, seed: int):
    """(frames, boxes) of one video: the scene moving a few pixels, seen live or through an attack."""
    rng = np.random.default_rng(seed)
    frames, boxes = [], []
    for i in range(count):
        dx, dy = 4 * np.sin(i * 0.7 + seed), 3 * np.cos(i * 0.5 + seed)
        frame = _shift(scene, dx, dy)
        if kind == TYPE_PRINT:
            frame = _print_attack(frame, rng)
        elif kind == TYPE_REPLAY:
            frame = _replay_attack(frame, i * 0.6)
        else:
            frame = np.clip(frame.astype(np.float32) + rng.normal(0, 3, frame.shape), 0, 255).astype(np.uint8)
        frames.append(frame)
        x1, y1, x2, y2 = box
        boxes.append((int(round(x1 + dx)), int(round(y1 + dy)), int(round(x2 + dx)), int(round(y2 + dy))))
    return frames, boxes


def write_video(path: Path, frames: list[np.ndarray], fps: float = 15.0) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC), fps, frames[0].shape[1::-1])
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {FOURCC} into {path}")
    for frame in frames:
        writer.write(frame)
    writer.release()


def face_lines(boxes) -> list[str]:
    return [f"{x1} {y1} {x2} {y2}" for x1, y1, x2, y2 in boxes]


def build_siw_dataset(root: Path, faces_dir: Path, frames_per_video: int = 10,
                      subjects: int = len(PHOTO_FACES), frame_size: int = FRAME_SIZE,
                      face_width: int = FACE_WIDTH) -> BuiltDataset:
    """Train holds the first half of the subjects, Test the rest; each subject has a live, a print and a replay
    video."""
    videos: dict[str, Path] = {}
    for index in range(subjects):
        subject = f"{index + 1:03d}"
        split = "Train" if index < subjects // 2 else "Test"
        scene, box = subject_scene(faces_dir, index, frame_size, face_width)
        for kind in (TYPE_LIVE, TYPE_PRINT, TYPE_REPLAY):
            name = f"{subject}-1-{kind}-1-1"
            label = "live" if kind == TYPE_LIVE else "spoof"
            folder = root / split / label / subject
            folder.mkdir(parents=True, exist_ok=True)
            frames, boxes = video_frames(scene, box, kind, frames_per_video, seed=index * 10 + int(kind))
            lines = face_lines(boxes)
            video_path = folder / f"{name}.mov"
            if index == 0 and kind == TYPE_LIVE:  # a line with a number missing (the seed's missing `48`)
                x1, y1, x2, y2 = boxes[2]
                lines[2] = f"{x1} {x2} {y2}"
            if index == 0 and kind == TYPE_PRINT:  # an all-zero box
                lines[3] = "0 0 0 0"
            if index == 1 and kind == TYPE_LIVE:  # fewer lines than frames
                lines = lines[:-3]
            if index == 1 and kind == TYPE_REPLAY:  # `*.m.mov`, its .face without the `.m`
                video_path = folder / f"{name}.m.mov"
            (folder / f"{name}.face").write_text("\n".join(lines) + "\n")
            if index == 2 and kind == TYPE_PRINT:  # unreadable: not a video at all
                video_path.write_bytes(b"\x00\x00\x00\x14ftypqt  " + bytes(range(256)) * 8)
            else:
                write_video(video_path, frames)
            videos[name] = video_path
    return BuiltDataset(root, videos, frames_per_video,
                        bad_line_video="001-1-1-1-1", zero_box_video="001-1-2-1-1",
                        short_face_video="002-1-1-1-1", short_face_missing=3,
                        m_mov_video="002-1-3-1-1", unreadable_video="003-1-2-1-1")
