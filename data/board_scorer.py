"""Spoof scores computed on the board: the crops, normalised on the host as the model card says, go to the
board's current release and through the runtime's `vim3_infer.py --parity` (the same entry point the deploy
health check uses), on whichever runtime backend the board runs (onnxruntime, OpenCV, the NPU through KSNN).

MODEL is the classifier's `edgepad convert` folder; the board must run that very classifier (its model card's
file digests are compared), so the figures are never those of another model.
"""
from __future__ import annotations

import contextlib
import io
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edgepad.errors import DeployError, UsageError

from .scorers import Scorer, read_model_card, spoof_index

CLASSIFIER = "classifier"  # the bundle's name for the PAD model
EMBEDDING = "embedding"  # and for a face recognition model
BOARD_TIMEOUT_S = 3600


@dataclass
class BoardTarget:
    host: str  # [user@]host[:port]
    board_options: object  # edgepad.deploy.pipeline.BoardOptions
    runtime_backend: str | None = None  # the runtime's --backend on the board; None lets it choose


class BoardScorer(Scorer):
    def __init__(self, model_dir: Path, target: BoardTarget | None):
        if target is None:
            raise UsageError("--stage board: give the board with --host [user@]host[:port]")
        card = read_model_card(model_dir, "board")
        self.card = card
        self.target = target
        self.default_threshold = float(card.get("threshold", 0.5))
        self.threshold_source = f"model card {self.default_threshold}"
        self.layout = card.get("targets", {}).get("onnx", {}).get("layout", "nhwc")
        self.model_name = EMBEDDING if card.get("task") == "embedding" else CLASSIFIER
        super().__init__(card["preprocess"], int(card["input"]["height"]), int(card["input"]["width"]),
                         spoof_index(card), card.get("head"))

    def spoof_scores(self, paths: Sequence[Path], progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """All crops in one round trip: one upload, one runtime run, one download."""
        probabilities = self._on_board(np.stack([self._load(p) for p in paths]))
        if progress:
            progress(len(paths), len(paths))
        return self.spoof_of(probabilities, len(paths))

    def outputs(self, images_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """The model's raw outputs for aligned faces (an embedding model's embeddings), in one round trip."""
        from edgepad.runtime.preprocess import normalize

        batch = np.stack([normalize(image, self.preprocess, self.height, self.width) for image in images_bgr])
        return np.asarray(self._on_board(batch), np.float64).reshape(len(images_bgr), -1)

    def _on_board(self, batch: np.ndarray) -> np.ndarray:
        """The model's first output for a normalised NHWC batch, computed by the board's current release."""
        from edgepad.deploy.health import runtime_command
        from edgepad.deploy.inventory import parse_host
        from edgepad.deploy.pipeline import open_board

        batch = batch.astype(np.float32)
        if self.layout == "nchw":
            batch = batch.transpose(0, 3, 1, 2)
        spec = parse_host(self.target.host, "khadas", 22)
        token = secrets.token_hex(4)
        with open_board(spec, self.target.board_options) as board:
            release = board.op("scan")["current"]
            if not release:
                raise DeployError(f"{board.name}: nothing deployed under {board.root}; run `edgepad deploy` first")
            self._check_same_classifier(board, release)
            inputs_name, outputs_name = f".evaluate-{token}.npz", f".evaluate-{token}.out.npz"
            buffer = io.BytesIO()
            np.savez(buffer, **{self.model_name: batch})
            buffer.seek(0)
            board.connection.sftp.putfo(buffer, board.path(inputs_name))
            try:
                argv = runtime_command(board, release, "--parity", board.path(inputs_name),
                                       "--out", board.path(outputs_name))
                if self.target.runtime_backend:
                    argv += ["--backend", self.target.runtime_backend]
                ran = board.connection.run(argv, timeout=BOARD_TIMEOUT_S)
                if ran.exit_code != 0:
                    lines = ran.stderr.decode(errors="replace").strip().splitlines()
                    raise DeployError(f"{board.name}: the runtime exited with {ran.exit_code} running the crops: "
                                      f"{lines[-1] if lines else 'no message'}")
                received = io.BytesIO()
                board.connection.sftp.getfo(board.path(outputs_name), received)
            finally:
                for name in (inputs_name, outputs_name):
                    with contextlib.suppress(DeployError):  # a leftover scratch file must not hide the real outcome
                        board.op("remove", path=name)
        received.seek(0)
        with np.load(received, allow_pickle=False) as data:
            keys = [k for k in data.files if k.startswith(f"{self.model_name}/")]
            return data[keys[0]]

    def _check_same_classifier(self, board, release: str) -> None:
        buffer = io.BytesIO()
        try:
            remote_card = board.release_path(release, "models", self.model_name, "edgepad.json")
            board.connection.sftp.getfo(remote_card, buffer)
        except OSError:
            raise DeployError(f"{board.name}: release {release} has no models/{self.model_name}; deploy a bundle "
                              f"built with this {self.model_name} model") from None
        remote = json.loads(buffer.getvalue().decode())
        if remote.get("sha256") != self.card.get("sha256"):
            raise UsageError(f"MODEL: the board's current release {release} runs another {self.model_name} than "
                             "this convert output; deploy a bundle of it first, or give the folder the bundle was "
                             "built from")
