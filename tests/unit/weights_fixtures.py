"""Files and a local HTTP server for the fetch-weights tests (nothing touches the real internet).

The server (pytest-httpserver on 127.0.0.1) serves real files made here: a tiny checkpoint of our network
(configs/tiny_cpu.yaml), a released-results pickle, a limb-length HDF5; per path it can honour or ignore
HTTP Range, drop the connection midway on the first request, corrupt the body, stall, or answer 404.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch
from werkzeug import Request, Response

from ctxpose.config import load_config
from ctxpose.models.build import build_model
from ctxpose.skeleton import LimbPrior, get_skeleton

REPO = Path(__file__).parents[2]
DATA = REPO / "tests" / "data" / "weights"
#: the tiny_cpu.yaml model section, as a registry `model` table
TINY_MODEL_TOML = "{ backbone = { num_layers = 18 }, volume_net = { volume_size = 16, att_channels = 17 } }"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tiny_checkpoint_bytes(tmp: Path) -> bytes:
    """state_dict of the network built from configs/tiny_cpu.yaml, saved by torch.save."""
    cfg = load_config(REPO / "configs" / "tiny_cpu.yaml")
    torch.manual_seed(0)
    model = build_model(cfg, LimbPrior(torch.full((16,), 300.0), torch.full((16,), 30.0)))
    path = tmp / "tiny.pth"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path)  # as DDP saves it
    return path.read_bytes()


def detector_state_dict_bytes(tmp: Path, classes: int = 91) -> bytes:
    """An untrained state dict with the keys of torchvision's Faster R-CNN (made without torchvision: a few
    tensors under backbone./rpn./roi_heads., a box classifier over COCO's 91 categories), saved by torch.save."""
    g = torch.Generator().manual_seed(0)
    state = {"backbone.body.0.0.weight": torch.randn(16, 3, 3, 3, generator=g),
             "backbone.fpn.inner_blocks.0.0.weight": torch.randn(8, 16, 1, 1, generator=g),
             "rpn.head.conv.0.0.weight": torch.randn(8, 8, 3, 3, generator=g),
             "rpn.head.cls_logits.weight": torch.randn(15, 8, 1, 1, generator=g),
             "roi_heads.box_head.fc6.weight": torch.randn(32, 8 * 7 * 7, generator=g),
             "roi_heads.box_predictor.cls_score.weight": torch.randn(classes, 32, generator=g),
             "roi_heads.box_predictor.bbox_pred.weight": torch.randn(classes * 4, 32, generator=g)}
    path = tmp / "detector.pth"
    torch.save(state, path)
    return path.read_bytes()


def results(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    kp = (rng.normal(size=(n, get_skeleton("contextpose17").num_joints, 3)) * 100 + 1000).astype(np.float32)
    return kp, rng.permutation(n)


def results_pickle_bytes(n: int, seed: int = 0) -> bytes:
    kp, idx = results(n, seed)
    return pickle.dumps({"keypoints_3d": kp, "indexes": idx})


def limb_h5_bytes(tmp: Path) -> bytes:
    path = tmp / "limbs.h5"
    with h5py.File(path, "w") as f:
        f["mean"] = np.linspace(100, 400, 16)
        f["std"] = np.linspace(5, 20, 16)
    return path.read_bytes()


@dataclass
class Served:
    data: bytes
    ranges: bool = True  # honour Range
    drop_first: bool = False  # first request: half the body, then the connection closes
    corrupt: bool = False
    stall: float = 0.0  # seconds before answering
    status: int = 200
    headers: dict = field(default_factory=dict)


class FileServer:
    """Serves ``Served`` entries by path and records every request (path, Range header, status)."""

    def __init__(self, httpserver) -> None:
        self.server = httpserver
        self.files: dict[str, Served] = {}
        self.log: list[tuple[str, str | None, int]] = []
        httpserver.expect_request(re.compile(r"^/files/.*")).respond_with_handler(self._handle)

    def add(self, name: str, served: Served) -> str:
        self.files[name] = served
        return self.url(name)

    def url(self, name: str) -> str:
        return self.server.url_for(f"/files/{name}")

    @property
    def prefix(self) -> str:
        return self.server.url_for("/files")

    def _handle(self, request: Request) -> Response:
        name = request.path[len("/files/"):]
        served = self.files.get(name)
        rng = request.headers.get("Range")
        if served is None or served.status == 404:
            self.log.append((name, rng, 404))
            return Response("not found", status=404)
        if served.stall:
            time.sleep(served.stall)
        data = bytearray(served.data)
        if served.corrupt:
            data[len(data) // 2] ^= 0xFF
        start = 0
        m = re.match(r"bytes=(\d+)-$", rng or "")
        status = 200
        headers = {"Accept-Ranges": "bytes" if served.ranges else "none", **served.headers}
        if m and served.ranges:
            start = int(m.group(1))
            if start >= len(data):
                self.log.append((name, rng, 416))
                return Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = bytes(data[start:])
        headers["Content-Length"] = str(len(body))
        self.log.append((name, rng, status))
        if served.drop_first:
            served.drop_first = False
            half = body[: len(body) // 2]
            return Response(iter([half]), status=status, headers=headers, direct_passthrough=True)
        return Response(body, status=status, headers=headers)


def registry_toml(entries: list[dict]) -> str:
    """A registry file; entries: name, kind, dest, urls, and optional model/sha256/rows/split/size."""
    out = ["format = 1", ""]
    for e in entries:
        out.append("[[artifact]]")
        for key in ("name", "kind", "dest", "split"):
            if key in e:
                out.append(f'{key} = "{e[key]}"')
        out.append(f'description = "test artifact {e["name"]}"')
        for key in ("rows", "size"):
            if key in e:
                out.append(f"{key} = {e[key]}")
        for key in ("sha256", "sha256_prefix"):
            if key in e:
                out.append(f'{key} = "{e[key]}"')
        if "model" in e:
            out.append(f"model = {e['model']}")
        for url in e["urls"]:
            out += ["  [[artifact.url]]", f'  url = "{url}"', '  source = "test"']
        out.append("")
    return "\n".join(out)


class CuttingServer:
    """A raw HTTP/1.1 server on 127.0.0.1 (one thread, one request per connection) serving ``data``: the first
    response sends ``cut`` bytes of the body, then closes the connection (``stall`` 0) or goes silent for
    ``stall`` seconds first; later ones honour ``Range: bytes=N-``. Records every request's Range header.

    A raw socket, not a WSGI server, so the cut lands exactly at byte ``cut`` of the body (a WSGI server buffers).
    """

    def __init__(self, data: bytes, cut: int, stall: float = 0.0) -> None:
        import socket
        import threading

        self.data, self.cut, self.stall = data, cut, stall
        self.ranges: list[str | None] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/files/weights.bin"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import threading

        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()  # a stalled one blocks none

    def _answer(self, conn) -> None:
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                got = conn.recv(4096)
                if not got:
                    break
                request += got
            m = re.search(rb"(?im)^range:\s*bytes=(\d+)-\s*$", request)
            self.ranges.append(f"bytes={int(m.group(1))}-" if m else None)
            first, n = len(self.ranges) == 1, len(self.data)
            if m:
                start = int(m.group(1))
                head = (f"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{n - 1}/{n}\r\n"
                        f"Content-Length: {n - start}\r\n")
            else:
                start, head = 0, f"HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n"
            conn.sendall((head + "Accept-Ranges: bytes\r\nConnection: close\r\n\r\n").encode())
            if first:
                conn.sendall(self.data[: self.cut])
                time.sleep(self.stall)
            else:
                conn.sendall(self.data[start:])

    def close(self) -> None:
        import socket

        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (close() alone does not, on Linux)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()
