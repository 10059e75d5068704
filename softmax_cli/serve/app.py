"""The HTTP API of a checkpoint and the page to draw a digit on: a FastAPI application.

    POST /predict   images (multipart/form-data, any field name) or {"pixels": [[...], ...]}
                    -> {"predictions": [{"input", "class", "probability", "top_k"}, ...]}
    GET  /model     what ``softmax inspect --json`` prints
    GET  /healthz   {"status": "ok"}
    GET  /          the drawing page (static HTML, CSS and JavaScript from this package)
    GET  /docs      OpenAPI documentation, as FastAPI makes it

Images go through the image path ``softmax predict`` uses
(:func:`softmax_cli.predict.classify`, so :func:`~softmax_cli.data.images.image_to_input`),
rows of pixels through :func:`softmax_cli.predict.rank`; both end in
:meth:`Checkpoint.predict_proba`, so the numbers are predict's. A request never names a file
of the server: uploads are decoded from memory (:class:`Upload`), and a text field is refused.
Every bad request gets a 4xx answer ``{"detail": "<what was wrong, naming the part>"}``.
"""

from __future__ import annotations

import io
import json

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .. import __version__
from ..checkpoint import Checkpoint, describe_checkpoint
from ..errors import quote
from ..predict import classify, rank
from .limits import BodySizeLimit

MAX_BODY_BYTES = 10 * 2**20        # the default request size limit: 10 MiB
MAX_PARTS = 256                    # images (and fields) in one multipart request
# the image formats a request may send (Pillow's names); others (EPS through Ghostscript,
# PDF, ...) are refused before any decoder sees them
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
# the page's Content-Security-Policy: nothing loads from anywhere but this server
PAGE_CSP = "default-src 'self'; img-src 'self' data: blob:; base-uri 'none'; form-action 'self'"


class Upload(io.BytesIO):
    """An uploaded image held in memory; ``str()`` is the name messages give it."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self.name = name

    def __str__(self) -> str:
        return self.name


class PixelRows(BaseModel):
    """A JSON body of raw pixel rows."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    pixels: list[list[float]] = Field(min_length=1, description=(
        "One row per image: height * width raw pixel values in row-major order, 0 (background) to "
        "the model's pixel_max (full ink), as the training data had them (GET /model tells both)."))


class ClassProbability(BaseModel):
    class_: str = Field(alias="class")
    probability: float


class PredictionOut(BaseModel):
    input: str = Field(description="files[i] (the i-th file of a field) or pixels[i] (the i-th row)")
    filename: str | None = Field(None, description="the uploaded file's name, for a file")
    class_: str = Field(alias="class", description="the most probable class ('unknown' below "
                                                   "reject_threshold)")
    probability: float
    top_k: list[ClassProbability]


class PredictResponse(BaseModel):
    predictions: list[PredictionOut]


_PREDICT_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
    "application/json": {"schema": PixelRows.model_json_schema()}}}}


def create_app(ckpt: Checkpoint, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The application serving ``ckpt``.

    Args:
        ckpt: a loaded checkpoint; it is only read, by many threads at once
            (:meth:`Checkpoint.predict_proba` keeps no state between calls).
        max_body_bytes: requests with a larger body get 413.
    """
    app = FastAPI(title="softmax", version=__version__,
                  description=f"Predictions of the MLP in {ckpt.path.name} "
                              f"({'-'.join(map(str, ckpt.model.sizes))}, classes {', '.join(ckpt.classes)}).")
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    app.mount("/static", StaticFiles(packages=[("softmax_cli.serve", "static")]), name="static")
    model_json = json.dumps(describe_checkpoint(ckpt))          # as `softmax inspect --json`
    from importlib.resources import files

    page = (files(__package__) / "static" / "index.html").read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_CSP})

    @app.get("/healthz", summary="Liveness: 200 while the server runs")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/model", summary="What the checkpoint holds, as `softmax inspect --json` prints it")
    def model() -> Response:
        return Response(model_json, media_type="application/json")

    @app.post("/predict", response_model=PredictResponse, openapi_extra=_PREDICT_BODY,
              summary="Classify images (multipart) or rows of raw pixels (JSON)")
    async def predict(request: Request,
                      top_k: int = Query(1, ge=1, description="how many classes each answer lists"),
                      reject_threshold: float = Query(0.0, ge=0.0, le=1.0, description=(
                          "answer 'unknown' when the highest probability is below it"))) -> JSONResponse:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
            answers = await _predict_images(ckpt, request, top_k, reject_threshold)
        elif kind == "application/json" or kind.endswith("+json"):
            answers = await _predict_rows(ckpt, await request.body(), top_k, reject_threshold)
        else:
            raise HTTPException(415, f"Content-Type {quote(kind or 'none')}: send images as multipart/form-data "
                                     f"or pixel rows as application/json")
        return JSONResponse({"predictions": answers})

    return app


def _answer(pred, name: str, filename: str | None = None) -> dict:
    out = pred.to_json()
    del out["path"]
    return {"input": name, **({"filename": filename} if filename is not None else {}), **out}


async def _predict_images(ckpt: Checkpoint, request: Request, top_k: int, threshold: float) -> list[dict]:
    """Read the multipart body's files into memory and classify them as ``softmax predict`` does.

    Raises:
        HTTPException: 422 for a text field (a file is never read by the name a request
            gives), no file, a file not in :data:`IMAGE_FORMATS` or that cannot be used
            (naming each part); 400 for a malformed body (Starlette's multipart parser).
    """
    async with request.form(max_files=MAX_PARTS, max_fields=MAX_PARTS) as form:
        uploads, names, counts = [], [], {}
        for field, value in form.multi_items():
            index = counts[field] = counts.get(field, -1) + 1
            name = f"{field}[{index}]"
            if isinstance(value, str):
                raise HTTPException(422, f"{name}: expected an image file, got a text field ({quote(value)}); "
                                         f"send the image's bytes: the server reads no file a request names")
            uploads.append(Upload(await value.read(), f"{name} {quote(value.filename or '')}"))
            names.append((name, value.filename))
    if not uploads:
        raise HTTPException(422, "no image in the request: send one or more files as multipart/form-data")
    errors = []
    for upload in uploads:
        problem = _format_problem(upload)
        if problem:
            errors.append(f"{upload}: {problem}")
    if not errors:
        preds = await run_in_threadpool(classify, ckpt, uploads, top_k, threshold, errors.append)
    if errors:
        messages = [str(e) for e in errors]
        raise HTTPException(422, messages[0] if len(messages) == 1 else
                            f"{messages[0]} (and {len(messages) - 1} more: {'; '.join(messages[1:])})")
    return [_answer(p, name, filename) for p, (name, filename) in zip(preds, names)]


def _format_problem(upload: Upload) -> str | None:
    """Why an upload is refused before decoding, from its header (None: an image of an accepted
    format and size).

    Pillow's decompression-bomb guard compares the header's size with ``Image.MAX_IMAGE_PIXELS``
    and only warns up to twice that; ``load_grayscale`` turns the warning into an error with
    ``warnings.catch_warnings``, which is not thread-safe (requests are decoded in a thread
    pool), so the size is compared here, once, without warnings.
    """
    from PIL import Image, UnidentifiedImageError

    limit = Image.MAX_IMAGE_PIXELS
    try:
        with Image.open(upload, formats=IMAGE_FORMATS) as img:     # reads the header only
            width, height = img.size
    except UnidentifiedImageError:
        return f"not an image in a format the server takes ({', '.join(IMAGE_FORMATS)})"
    except Image.DecompressionBombError:
        width = height = None
    except Exception:           # a damaged header: leave the message to the decoder
        return None
    finally:
        upload.seek(0)
    if limit is not None and (width is None or width * height > limit):
        size = "" if width is None else f"{width}x{height} pixels, "
        return (f"image too large: {size}more than {limit} pixels, the server's decompression bomb limit "
                f"(refused before decoding)")
    return None


async def _predict_rows(ckpt: Checkpoint, body: bytes, top_k: int, threshold: float) -> list[dict]:
    """Validate a JSON body of pixel rows (:class:`PixelRows`) and classify the rows.

    Raises:
        HTTPException: 422 naming the place: malformed JSON, not ``{"pixels": [[number, ...], ...]}``,
            a non-finite number, a row of the wrong length, a value outside 0..pixel_max.
    """
    try:
        rows = PixelRows.model_validate_json(body).pixels
    except ValidationError as exc:
        err = exc.errors()[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        raise HTTPException(422, f"JSON body{': ' + where if where else ''}: {err['msg']}") from None
    d, pixel_max = ckpt.model.sizes[0], ckpt.preprocessor.pixel_max
    for i, row in enumerate(rows):
        if len(row) != d:
            raise HTTPException(422, f"JSON body: pixels[{i}]: {len(row)} values, expected {d} "
                                     f"({ckpt.image_shape[0]}x{ckpt.image_shape[1]} pixels)")
    X = np.asarray(rows, dtype=np.float64)
    bad = np.argwhere((X < 0) | (X > pixel_max))
    if len(bad):
        i, j = bad[0]
        raise HTTPException(422, f"JSON body: pixels[{i}][{j}]: {X[i, j]:g} is outside 0..{pixel_max:g}")
    names = [f"pixels[{i}]" for i in range(len(rows))]
    preds = await run_in_threadpool(rank, ckpt, names, X.astype(np.float32), top_k, threshold)
    return [_answer(p, name) for p, name in zip(preds, names)]
