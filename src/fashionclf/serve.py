"""The web service: POST /predict with one or several pictures, GET /health, and an upload page at GET /."""

from __future__ import annotations

import base64
from importlib import resources

import numpy as np
from fastapi import FastAPI, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse

from fashionclf.errors import FashionClfError
from fashionclf.inference import Classifier, open_image, png_bytes, to_dataset_domain
from fashionclf.inference import top_k as ranked

DEFAULT_MAX_BYTES = 10 * 1024 * 1024


class RequestTooLarge(Exception):
    pass


def create_app(classifier: Classifier, max_bytes: int = DEFAULT_MAX_BYTES, k: int = 3) -> FastAPI:
    app = FastAPI(title="fashionclf", description="Classify clothing pictures into the 10 Fashion-MNIST classes.")
    page = resources.files("fashionclf").joinpath("page.html").read_text(encoding="utf-8")

    @app.middleware("http")
    async def limit_request_size(request: Request, call_next):
        # The declared size is refused before the body is read; chunked uploads are counted as they are read.
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            return _too_large(max_bytes)
        return await call_next(request)

    @app.exception_handler(RequestTooLarge)
    async def too_large(_request: Request, _exc: RequestTooLarge) -> JSONResponse:
        return _too_large(max_bytes)

    @app.exception_handler(FashionClfError)
    async def bad_input(_request: Request, exc: FashionClfError) -> JSONResponse:
        return JSONResponse(status_code=400, content={"error": str(exc)})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def upload_page() -> str:
        return page

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": classifier.description}

    @app.post("/predict")
    async def predict(files: list[UploadFile], top_k: int = Query(k, ge=1, le=10)) -> dict:
        """Top-k classes for each uploaded picture, and the 28x28 image the model saw (base64 PNG)."""
        inputs = []
        received = 0
        for upload in files:
            content = await upload.read()
            received += len(content)
            if received > max_bytes:
                raise RequestTooLarge
            name = upload.filename or "upload"
            inputs.append((name, to_dataset_domain(open_image(content, name))))
        probabilities = classifier.probabilities(np.stack([array for _, array in inputs]))
        return {
            "model": classifier.description,
            "predictions": [
                {"file": name, "top_k": top, "model_input_png": base64.b64encode(png_bytes(array)).decode("ascii")}
                for (name, array), top in zip(inputs, ranked(probabilities, top_k), strict=True)
            ],
        }

    return app


def _too_large(max_bytes: int) -> JSONResponse:
    return JSONResponse(status_code=413, content={"error": f"request is larger than the limit of {max_bytes:,} bytes"})


def serve(classifier: Classifier, host: str = "127.0.0.1", port: int = 8000, max_bytes: int = DEFAULT_MAX_BYTES):
    import uvicorn

    uvicorn.run(create_app(classifier, max_bytes), host=host, port=port, log_level="info")
