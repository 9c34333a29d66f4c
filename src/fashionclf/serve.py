"""The web service: POST /predict with one or several pictures, GET /health, an upload page at GET /, and the API's
documentation at /docs (its assets served from the fastapi-offline package, so it works offline).

Nothing slow runs on the event loop, so /health and every other request are answered while pictures are decoded
and classified: pictures are decoded in a small thread pool, and one inference thread gathers the pictures of
concurrent requests into one model call, as TorchServe and Triton batch. Limits are enforced as early as they can
be: the body's size while it streams in, and the pixels that the pictures' headers declare before any pixel is
decoded. Every error is `{"error": "..."}`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import queue
import socket
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources

import h11
import numpy as np
import uvicorn
from fastapi import FastAPI, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

from fashionclf import explain as heat
from fashionclf.errors import FashionClfError
from fashionclf.inference import Classifier
from fashionclf.inference import top_k as ranked
from fashionclf.preprocess import MAX_PIXELS, InputFormat, open_image, png_bytes, read_header


@dataclass(frozen=True)
class Limits:
    """What one request may hold."""

    bytes: int = 10 * 1024 * 1024
    files: int = 32
    pixels: int = 2 * MAX_PIXELS  # two pictures at the per-picture limit


class RequestTooLarge(HTTPException):
    """A request over one of the Limits: answered with 413. An HTTPException, so that FastAPI passes it on as it is
    when it is raised while the body is being parsed."""

    def __init__(self, message: str):
        super().__init__(status_code=413, detail=message)


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` is refused while it streams in, a declared Content-Length
    before anything is read and a chunked body at the first chunk past the limit, so nothing beyond the limit is
    read, spooled to disk or held in memory."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"request is larger than the limit of {self.max_bytes:,} bytes"
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _error(413, message)(scope, receive, send)
            return
        received = 0

        async def counted():
            nonlocal received
            event = await receive()
            received += len(event.get("body", b""))
            if received > self.max_bytes:
                raise RequestTooLarge(message)
            return event

        await self.app(scope, counted, send)


class HeadAsGet:
    """ASGI middleware: HEAD answered wherever GET is, as HTTP asks and FastAPI's routes do not (they take only the
    methods declared): routed as GET, so the headers are GET's; the server sends no body for a HEAD. A 405's Allow
    header names HEAD wherever it names GET."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def answer(message):
            if message["type"] == "http.response.start" and message["status"] == 405:
                message = {**message, "headers": [_with_head(name, value) for name, value in message["headers"]]}
            await send(message)

        await self.app({**scope, "method": "GET"} if scope["method"] == "HEAD" else scope, receive, answer)


def _with_head(name: bytes, value: bytes) -> tuple[bytes, bytes]:
    methods = value.split(b", ")
    if name == b"allow" and b"GET" in methods and b"HEAD" not in methods:
        return name, value + b", HEAD"
    return name, value


class Batcher:
    """One thread that runs the model: it takes the pictures waiting from every request, up to `max_batch`, and
    classifies them in one call, so concurrent requests share the model's per-call cost and never contend for it."""

    def __init__(self, classifier: Classifier, max_batch: int = 64):
        self.classifier, self.max_batch = classifier, max_batch
        self._waiting: queue.SimpleQueue[tuple[np.ndarray, Future] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="fashionclf-inference", daemon=True)
        self._thread.start()

    def classify(self, images: np.ndarray) -> Future:
        """A future of the class probabilities (N, classes) of uint8 model inputs (N, C, H, W)."""
        future: Future = Future()
        self._waiting.put((images, future))
        return future

    def close(self) -> None:
        self._waiting.put(None)
        self._thread.join()

    def _serve(self) -> None:
        while (first := self._waiting.get()) is not None:
            gathered = [first]
            count = len(first[0])
            while count < self.max_batch:
                try:
                    item = self._waiting.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._waiting.put(None)  # stop after this batch
                    break
                gathered.append(item)
                count += len(item[0])
            self._run(gathered)

    def _run(self, gathered: list[tuple[np.ndarray, Future]]) -> None:
        try:
            probabilities = self.classifier.probabilities(np.concatenate([images for images, _ in gathered]))
        except Exception as exc:  # noqa: BLE001 - whatever failed, every waiting request hears of it
            for _, future in gathered:
                future.set_exception(exc)
            return
        start = 0
        for images, future in gathered:
            future.set_result(probabilities[start : start + len(images)])
            start += len(images)


def prepare(
    uploads: list[tuple[str, bytes]], input: InputFormat, max_pixels: int
) -> list[tuple[np.ndarray, dict[str, float]]]:
    """The model inputs of a request's pictures, each with where it lies on its picture (`explain.placement`);
    every header is checked against the limits before any picture is decoded."""
    pixels = sum(read_header(content, name) for name, content in uploads)
    if pixels > max_pixels:
        raise RequestTooLarge(f"the pictures hold {pixels:,} pixels in all, over the limit of {max_pixels:,} a request")
    return [_framed(input, open_image(content, name)) for name, content in uploads]


def _framed(input: InputFormat, picture) -> tuple[np.ndarray, dict[str, float]]:
    array, frame = input.prepare_framed(picture)
    return array, heat.placement(frame, picture.size)


EXPLAINED = 3  # classes with a heat map, of the top-k: each costs a forward and backward pass


def create_app(
    classifier: Classifier,
    limits: Limits = Limits(),
    k: int = 3,
    explainer: Callable[[], heat.Explainer] | None = None,
) -> FastAPI:
    """The app; `explainer` loads the model that draws heat maps, on the first request that asks for them (None:
    they are refused)."""
    batcher = Batcher(classifier)
    # One core is left to the event loop and the inference thread: with a decoder on every core, they contend for
    # the GIL and the loop answers later (measured on 2 cores: 1 decoder serves 1.16x the requests of 2 at 8 clients).
    decoders = ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 2) - 1), thread_name_prefix="fashionclf-decode")
    # Heat maps take one thread of their own (started on the first request for them), so that they hold up
    # neither decoding nor the model's batches.
    explaining = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fashionclf-explain")
    heat_maps = _heat_maps(explainer)

    @asynccontextmanager
    async def lifespan(_app):
        yield
        batcher.close()
        decoders.shutdown()
        explaining.shutdown()

    classes = classifier.spec.classes
    description = f"Classify clothing pictures into {len(classes)} classes: {', '.join(classes)}."
    app = FastAPIOffline(title="fashionclf", description=description, lifespan=lifespan)
    app.add_middleware(BodyLimit, max_bytes=limits.bytes)
    app.add_middleware(HeadAsGet)
    _add_error_handlers(app, limits)
    page = resources.files("fashionclf").joinpath("page.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def upload_page() -> str:
        return page

    @app.get("/health")
    async def health() -> dict:
        spec = classifier.spec
        return {"status": "ok", "model": classifier.description, "classes": list(spec.classes),
                "input": vars(spec.input)}  # fmt: skip

    # The form parser stops at the file past the limit, before it is spooled (its default stops at 1,000 whatever
    # the limit); the error handlers turn its 400 into a 413.
    @app.post("/predict", form_limits={"max_files": limits.files})
    async def predict(
        files: list[UploadFile],
        top_k: int = Query(k, ge=1, le=10),
        explain: bool = Query(False, description=f"Add heat maps (Grad-CAM) of the top {EXPLAINED} classes."),
    ) -> dict:
        """Top-k classes for each uploaded picture, and the image the model saw (base64 PNG); with `explain`, the
        heat maps of its top classes (base64 RGBA PNGs of the model's input) and where that input lies on the
        picture (fractions of its width and height)."""
        uploads = [(upload.filename or "upload", await upload.read()) for upload in files]
        loop, input = asyncio.get_running_loop(), classifier.spec.input
        framed = await loop.run_in_executor(decoders, prepare, uploads, input, limits.pixels)
        arrays = np.stack([array for array, _ in framed])
        probabilities = await asyncio.wrap_future(batcher.classify(arrays))
        tops = ranked(probabilities, top_k, classes)
        predictions: list[dict] = [
            {"file": name, "top_k": top, "model_input_png": _base64(png_bytes(array))}
            for (name, _), (array, _), top in zip(uploads, framed, tops, strict=True)
        ]
        if explain:
            explained = await loop.run_in_executor(explaining, heat_maps, arrays, tops)
            for prediction, (_, placement), maps in zip(predictions, framed, explained, strict=True):
                prediction |= {"heat_maps": maps, "placement": placement}
        return {"model": classifier.description, "predictions": predictions}

    return app


def _heat_maps(explainer: Callable[[], heat.Explainer] | None):
    """A function from model inputs and their top classes to each input's heat maps, for the response; it loads the
    explainer on its first call."""
    loaded: list[heat.Explainer] = []

    def heat_maps(arrays: np.ndarray, tops: list[list[dict]]) -> list[list[dict]]:
        if explainer is None:
            raise FashionClfError("heat maps need the model's PyTorch weights: serve a run directory or a .pt file")
        if not loaded:
            loaded.append(explainer())
        explained = [top[:EXPLAINED] for top in tops]
        maps = loaded[0].heat_maps(arrays, np.array([[t["index"] for t in top] for top in explained]))
        return [
            [{"class": t["class"], "png": _base64(heat.page_png(m))} for t, m in zip(top, row, strict=True)]
            for top, row in zip(explained, maps, strict=True)
        ]

    return heat_maps


def _base64(content: bytes) -> str:
    return base64.b64encode(content).decode("ascii")


def _add_error_handlers(app: FastAPI, limits: Limits) -> None:
    """Every error as {"error": "..."}: the user's own (400), a limit (413), FastAPI's validation (422), HTTP's, and
    the server's own failures (500)."""

    @app.exception_handler(FashionClfError)
    async def bad_input(_request: Request, exc: FashionClfError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(part) for part in e['loc'][1:]) or e['loc'][0]}: {e['msg']}" for e in exc.errors()]
        return _error(422, "; ".join(problems))

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        # Starlette tells a form of too many files by its message alone; test_serve holds it to that wording.
        if exc.status_code == 400 and str(exc.detail).startswith("Too many files"):
            return _error(413, f"request holds more files than the limit of {limits.files}")
        return _error(exc.status_code, str(exc.detail), exc.headers)  # a 405's Allow, for one

    @app.exception_handler(Exception)
    async def server_fault(_request: Request, exc: Exception) -> JSONResponse:
        # The server's own failure (the model call, say), not the request's: 500, still JSON; uvicorn logs it.
        return _error(500, f"the server failed on this request ({type(exc).__name__})")


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message}, headers=headers)


def serve(
    classifier: Classifier,
    listener: socket.socket,
    limits: Limits = Limits(),
    explainer: Callable[[], heat.Explainer] | None = None,
) -> None:
    """Serve on a socket from `listener.listen`, until Ctrl-C."""
    server(create_app(classifier, limits, explainer=explainer)).run(sockets=[listener])


def server(app: FastAPI) -> uvicorn.Server:
    """uvicorn serving `app`, given its listening socket when run."""
    return uvicorn.Server(uvicorn.Config(app, http=JsonBadRequest, log_level="info"))


class JsonBadRequest(H11Protocol):
    """uvicorn's HTTP/1.1 protocol (h11, what uvicorn runs without httptools), with the 400 that it sends itself,
    for a request it cannot parse, in JSON like every other error. Such a request never reaches the app, and
    uvicorn offers no setting for this answer: this overrides its send_400_response, and a raw-socket test in
    test_serve holds it to that."""

    def send_400_response(self, msg: str) -> None:
        body = json.dumps({"error": msg}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]  # fmt: skip
        for event in (h11.Response(status_code=400, headers=headers), h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()
