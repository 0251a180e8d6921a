"""One video -> its aligned face crops and its summary row. Runs in the main process or in a worker process."""
from __future__ import annotations

import os

import numpy as np

from .extract_records import ORIGINALS, ExtractOptions, VideoSummary, clear_partial, write_marker
from .faces import DEFAULT_THRESHOLDS, DetectorSettings, align_face, largest_face, make_detector
from .siw import SiwVideo, read_face_file

_worker_extractor = None
DETECT_BOX_SIZE = 120  # px: the longer side of a .face box once shrunk for detection (SiW faces are ~300 px)


def init_worker(options: ExtractOptions, models_root: str) -> None:
    """Each worker owns one core: libraries that spread over every core would fight the other workers."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import cv2

    cv2.setNumThreads(1)
    global _worker_extractor
    _worker_extractor = VideoExtractor(options, models_root, threads=1)


def extract_in_worker(video: SiwVideo) -> VideoSummary:
    return _worker_extractor.extract(video)


class VideoExtractor:
    def __init__(self, options: ExtractOptions, models_root: str, threads: int = 0):
        # An unreadable video is counted in summary.csv; FFmpeg's own complaint would only tear the progress bar.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        self.options = options
        thresholds = (DEFAULT_THRESHOLDS[0], DEFAULT_THRESHOLDS[1], options.confidence)
        self.detector = make_detector(DetectorSettings(options.min_face_size, thresholds), models_root, threads)

    def extract(self, video: SiwVideo) -> VideoSummary:
        import cv2

        out = self.options.out
        clear_partial(out, video)
        video_dir = out / video.key
        video_dir.mkdir(parents=True)
        originals_dir = out / ORIGINALS / video.key
        if self.options.keep_original:
            originals_dir.mkdir(parents=True)

        boxes = read_face_file(video.face_file)
        summary = VideoSummary(video.split, video.label, video.subject, video.name, video.attack_type,
                               bad_lines=boxes.bad_lines, zero_boxes=boxes.zero_boxes,
                               m_mov=int(video.m_mov), missing_face_file=int(boxes.missing_file))
        capture = cv2.VideoCapture(str(video.path))
        last_box = None
        try:
            while capture.isOpened():
                ok, frame = capture.read()
                if not ok or frame is None:
                    break
                index = summary.frames
                summary.frames += 1
                box = boxes.box_for(index)
                if index >= len(boxes.boxes):
                    summary.frames_without_line += 1
                if box is not None:
                    summary.boxes += 1
                    last_box = box
                elif self.options.borrow_boxes and last_box is not None:
                    box = last_box
                    summary.borrowed_boxes += 1
                else:
                    summary.no_box += 1
                    continue
                crop = crop_with_margin(frame, box, self.options.margin)
                if crop is None:
                    summary.no_box += 1
                    continue
                if self.options.keep_original:
                    cv2.imwrite(str(originals_dir / f"{index:05d}.png"), crop)
                landmarks = self._landmarks(crop, box)
                if landmarks is None:
                    summary.no_face += 1
                    continue
                aligned = align_face(crop, landmarks, self.options.size)
                cv2.imwrite(str(video_dir / f"{index:05d}.png"), aligned)
                summary.faces_aligned += 1
        finally:
            capture.release()
        summary.unreadable = int(summary.frames == 0)
        summary.extra_lines = max(0, len(boxes.boxes) - summary.frames) if summary.frames else 0
        summary.frames_lost = summary.frames - summary.faces_aligned
        write_marker(video_dir, summary)  # last: the video counts as done only now
        return summary


    def _landmarks(self, crop: np.ndarray, box) -> np.ndarray | None:
        """Five landmarks in crop pixels. A big face is found on a shrunk copy (its box DETECT_BOX_SIZE px):
        MTCNN's pyramid costs grow with the image, and the landmarks are as good; alignment uses full resolution."""
        import cv2

        scale = min(1.0, DETECT_BOX_SIZE / max(box[2] - box[0], box[3] - box[1]))
        image = crop if scale == 1.0 else cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        face = largest_face(self.detector.detect(image), self.options.confidence)
        return None if face is None else face.landmarks / scale


def crop_with_margin(frame: np.ndarray, box, margin: float) -> np.ndarray | None:
    """The box grown by `margin` of its longer side on every side, clipped to the frame; None if nothing is left."""
    height, width = frame.shape[:2]
    x1, y1, x2, y2 = box
    pad = margin * max(x2 - x1, y2 - y1)
    left, top = max(0, int(round(x1 - pad))), max(0, int(round(y1 - pad)))
    right, bottom = min(width, int(round(x2 + pad))), min(height, int(round(y2 + pad)))
    if right - left < 12 or bottom - top < 12:
        return None
    return frame[top:bottom, left:right]

