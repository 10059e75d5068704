"""``softmax serve``: a real uvicorn on 127.0.0.1 answering predict's numbers, inspect's
description, and a 4xx JSON error (never a 500) to every bad request."""

from __future__ import annotations

import io
import json
import signal
import socket
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import SAMPLES, assert_user_error, run_softmax
from serving import running_server
from softmax_cli.checkpoint import load_checkpoint

DIGITS = sorted(SAMPLES.glob("digits-*.png"))


@pytest.fixture(scope="module")
def server(digits_run):
    with running_server(digits_run["best_checkpoint"], cwd=digits_run["cwd"]) as srv:
        yield srv


def post_files(server, *files: tuple[str, bytes], **params) -> httpx.Response:
    return httpx.post(server.url + "predict", params=params, timeout=30,
                      files=[("files", (name, data, "application/octet-stream")) for name, data in files])


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


# ------------------------------------------------------------------------------- answers
def test_images_get_the_numbers_softmax_predict_gives(server, digits_run):
    response = post_files(server, *[(p.name, p.read_bytes()) for p in DIGITS], top_k=3)
    assert response.status_code == 200, response.text
    answers = response.json()["predictions"]
    proc = run_softmax("predict", *DIGITS, "-c", digits_run["best_checkpoint"], "--jsonl", "--top-k", "3",
                       cwd=digits_run["cwd"])
    expected = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [a["filename"] for a in answers] == [p.name for p in DIGITS]
    assert [a["input"] for a in answers] == [f"files[{i}]" for i in range(len(DIGITS))]
    for got, want in zip(answers, expected):
        assert (got["class"], got["probability"], got["top_k"]) == (want["class"], want["probability"], want["top_k"])
    assert sum(a["class"] == p.stem[-1] for a, p in zip(answers, DIGITS)) >= 9


def test_pixel_rows_get_the_checkpoints_probabilities(server, digits_run):
    from sklearn.datasets import load_digits

    X = load_digits().data[:5].astype(np.float32)              # raw 0..16, as the model was trained
    response = httpx.post(server.url + "predict?top_k=10&reject_threshold=0.5", json={"pixels": X.tolist()})
    assert response.status_code == 200, response.text
    proba = load_checkpoint(digits_run["best_checkpoint"]).predict_proba(X)
    for i, answer in enumerate(response.json()["predictions"]):
        assert answer["input"] == f"pixels[{i}]" and "filename" not in answer
        by_class = {t["class"]: t["probability"] for t in answer["top_k"]}
        np.testing.assert_array_equal([by_class[str(c)] for c in range(10)], proba[i])
        assert answer["class"] == (str(proba[i].argmax()) if proba[i].max() >= 0.5 else "unknown")


def test_model_is_what_inspect_prints(server, digits_run):
    proc = run_softmax("inspect", digits_run["best_checkpoint"], "--json", cwd=digits_run["cwd"])
    assert httpx.get(server.url + "model").json() == json.loads(proc.stdout)
    assert httpx.get(server.url + "healthz").json() == {"status": "ok"}


def test_docs_and_openapi(server):
    assert "swagger" in httpx.get(server.url + "docs").text.lower()
    spec = httpx.get(server.url + "openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/json"}
    assert {"/model", "/healthz", "/predict"} <= set(spec["paths"])


def test_the_page_and_its_files_come_from_the_server(server):
    page = httpx.get(server.url)
    assert page.status_code == 200 and "<canvas id=\"pad\"" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    for asset in ("static/app.js", "static/style.css"):
        response = httpx.get(server.url + asset)
        assert response.status_code == 200
        assert "http:" not in response.text and "https:" not in response.text     # no CDN, nothing remote
    assert "http:" not in page.text and "https:" not in page.text


# --------------------------------------------------------------------------- bad requests
def bomb_png(width: int = 5000, height: int = 5000) -> bytes:
    """A 1-bit PNG of width x height pixels (5000 x 5000: 25 million, above the server's 16.8
    million) in 3 kB, its chunks written with zlib (Pillow would decode a canvas to save one)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (len(data).to_bytes(4, "big") + kind + data
                + zlib.crc32(kind + data).to_bytes(4, "big"))
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    raw = (b"\x00" + bytes((width + 7) // 8)) * height
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def _multipart(fields: list[tuple[str, str | tuple[str, bytes]]]) -> dict:
    files = [(k, v) for k, v in fields if isinstance(v, tuple)]
    data = {k: v for k, v in fields if isinstance(v, str)}
    return {"files": files or None, "data": data or None}


BAD_REQUESTS = {
    # name: (request arguments for httpx, status, fragment of the detail)
    "oversized body": (lambda: {"files": [("files", ("big.png", b"\0" * (11 * 2**20)))]}, 413,
                       "request body too large: the limit is 10,485,760 bytes"),
    "oversized chunked body": (lambda: {"content": (b"\0" * 2**20 for _ in range(11)),
                                        "headers": {"content-type": "application/json"}}, 413,
                               "request body too large"),
    "a non-image": (lambda: _multipart([("files", ("notes.png", b"this is text, not an image"))]), 422,
                    "files[0] 'notes.png': not an image in a format the server takes"),
    "a decompression bomb": (lambda: _multipart([("files", ("bomb.png", bomb_png()))]), 422,
                             "files[0] 'bomb.png': image too large: 5000x5000 pixels, more than 16777216"),
    "a bigger decompression bomb": (lambda: _multipart([("files", ("huge.png", bomb_png(9000, 9000)))]), 422,
                                    "files[0] 'huge.png': image too large: more than 16777216 pixels"),
    "a truncated PNG": (lambda: _multipart([("files", ("cut.png", DIGITS[7].read_bytes()[:60]))]), 422,
                        "files[0] 'cut.png': cannot decode image"),
    "a blank image": (lambda: _multipart([("files", ("blank.png", png(Image.new("L", (28, 28), 255))))]), 422,
                      "files[0] 'blank.png': no ink found"),
    "the second of two files bad": (lambda: _multipart([("files", ("7.png", DIGITS[7].read_bytes())),
                                                        ("files", ("x.gif", b"GIF89a"))]), 422, "files[1] 'x.gif'"),
    "a path in a form field": (lambda: _multipart([("path", str(DIGITS[7]))]), 422,
                               "path[0]: expected an image file, got a text field"),
    "a path in a form field beside a file": (lambda: _multipart([("files", ("7.png", DIGITS[7].read_bytes())),
                                                                 ("files", str(DIGITS[3]))]), 422,
                                             "files[0]: expected an image file, got a text field"),
    "a path as a file's content": (lambda: _multipart([("files", ("p.png", str(DIGITS[7]).encode()))]), 422,
                                   "not an image in a format the server takes"),
    "no file": (lambda: {"files": {}, "data": {}, "headers": {"content-type": "multipart/form-data; boundary=x"},
                         "content": b"--x--\r\n"}, 422, "no image in the request"),
    "a malformed multipart body": (lambda: {"headers": {"content-type": "multipart/form-data"},
                                            "content": b"garbage"}, 400, "boundary"),
    "malformed JSON": (lambda: {"content": b'{"pixels": [[0, 1', "headers": {"content-type": "application/json"}},
                       422, "JSON body: Invalid JSON"),
    "JSON of the wrong shape": (lambda: {"json": {"pixels": "all of them"}}, 422, "JSON body: pixels: "),
    "an unknown JSON key": (lambda: {"json": {"pixels": [[0] * 64], "path": "/etc/passwd"}}, 422,
                            "JSON body: path: Extra inputs are not permitted"),
    "wrong pixel count": (lambda: {"json": {"pixels": [[0] * 64, [0] * 63]}}, 422,
                          "JSON body: pixels[1]: 63 values, expected 64 (8x8 pixels)"),
    "a NaN pixel": (lambda: {"content": b'{"pixels": [[NaN' + b", 0" * 63 + b"]]}",
                             "headers": {"content-type": "application/json"}}, 422, "JSON body: pixels[0][0]: "),
    "a pixel out of range": (lambda: {"json": {"pixels": [[0] * 10 + [17] + [0] * 53]}}, 422,
                             "JSON body: pixels[0][10]: 17 is outside 0..16"),
    "another content type": (lambda: {"content": b"1,2,3", "headers": {"content-type": "text/csv"}}, 415,
                             "Content-Type 'text/csv': send images as multipart/form-data"),
    "top_k 0": (lambda: {"json": {"pixels": [[0] * 64]}, "params": {"top_k": 0}}, 422, "greater than or equal to 1"),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_requests_get_a_4xx_json_error(server, name):
    make, status, fragment = BAD_REQUESTS[name]
    kwargs = make()
    params = kwargs.pop("params", {})
    response = httpx.post(server.url + "predict", params=params, timeout=60, **kwargs)
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/json"
    assert fragment in json.dumps(response.json()["detail"]), response.json()    # a list from FastAPI's own checks
    assert httpx.get(server.url + "healthz").status_code == 200
    assert server.stderr[1:] == []                  # no traceback, no warning: only the start-up line


def test_a_files_name_is_only_a_label(server):
    response = post_files(server, ("../../../../etc/passwd", DIGITS[7].read_bytes()))
    assert response.status_code == 200 and response.json()["predictions"][0]["filename"] == "../../../../etc/passwd"


def test_other_methods_and_paths_are_json_4xx(server):
    assert httpx.get(server.url + "predict").status_code == 405
    missing = httpx.get(server.url + "static/../../../etc/passwd")
    assert missing.status_code == 404 and "root:" not in missing.text


# ------------------------------------------------------------------------ the command itself
def test_a_bad_checkpoint_and_a_taken_port_are_one_line(digits_run, tmp_path):
    assert_user_error(run_softmax("serve", SAMPLES / "mnist-7.png", cwd=tmp_path),
                      "mnist-7.png: not a softmax checkpoint")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert_user_error(run_softmax("serve", digits_run["best_checkpoint"], "--port", port, cwd=tmp_path),
                          f"http://127.0.0.1:{port}/: cannot listen there (Address already in use)")
    assert_user_error(run_softmax("serve", digits_run["best_checkpoint"], "--log-level", "loud", cwd=tmp_path),
                      "--log-level: expected one of critical, error, warning, info, debug, got 'loud'")


@pytest.mark.parametrize("sig, workers", [(signal.SIGTERM, 1), (signal.SIGINT, 1), (signal.SIGTERM, 2)])
def test_a_signal_stops_the_server_with_exit_130_and_one_line(digits_run, sig, workers):
    with running_server(digits_run["best_checkpoint"], "--workers", str(workers), cwd=digits_run["cwd"]) as srv:
        response = post_files(srv, (DIGITS[7].name, DIGITS[7].read_bytes()))
        assert response.status_code == 200 and response.json()["predictions"][0]["class"] == "7"
        code, lines = srv.stop(sig)
    assert code == 130, lines
    assert lines[0].startswith(f"serving {digits_run['best_checkpoint']} (MLP 64-512-10, 10 classes) on "
                               f"http://127.0.0.1:") and f"with {workers} worker" in lines[0]
    assert lines[1:] == ["softmax: interrupted; the server stopped"]
