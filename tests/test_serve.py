"""The web service through FastAPI's test client, and its page in a real browser (headless Chromium)."""

import base64
import io
import shutil
import socket
import threading
import time

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from fashionclf.data import CLASSES
from fashionclf.inference import Classifier, to_dataset_domain
from fashionclf.models import create_model
from fashionclf.serve import create_app


def jpeg_of_a_garment() -> bytes:
    pixels = np.full((300, 240), 235, dtype=np.uint8)
    pixels[40:260, 90:150] = 30
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    torch.manual_seed(0)
    return Classifier(backend=create_model("fashion_cnn").eval(), description="untrained fashion_cnn")


@pytest.fixture
def client(classifier):
    return TestClient(create_app(classifier, max_bytes=200_000))


def test_health(client):
    assert client.get("/health").json() == {"status": "ok", "model": "untrained fashion_cnn"}


def test_predict_one_and_several_pictures(client):
    picture = jpeg_of_a_garment()
    answer = client.post("/predict", files=[("files", ("shirt.jpg", picture, "image/jpeg"))])
    assert answer.status_code == 200
    (prediction,) = answer.json()["predictions"]
    assert prediction["file"] == "shirt.jpg" and len(prediction["top_k"]) == 3
    assert sum(t["probability"] for t in prediction["top_k"]) <= 1.0 + 1e-6
    seen = Image.open(io.BytesIO(base64.b64decode(prediction["model_input_png"])))
    assert seen.size == (28, 28)
    several = client.post("/predict?top_k=5", files=[("files", ("a.jpg", picture)), ("files", ("b.jpg", picture))])
    assert [p["file"] for p in several.json()["predictions"]] == ["a.jpg", "b.jpg"]
    assert len(several.json()["predictions"][0]["top_k"]) == 5


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("notes.png", b"plain text, not a picture", "not an image"),
        ("empty.png", b"", "empty file"),
        ("half.jpg", jpeg_of_a_garment()[:2000], "truncated or corrupt"),
    ],
)
def test_bad_uploads_get_a_json_400_and_the_server_keeps_serving(client, name, content, fragment):
    answer = client.post("/predict", files=[("files", (name, content))])
    assert answer.status_code == 400
    assert answer.json()["error"].startswith(f"{name}: ") and fragment in answer.json()["error"]
    assert client.get("/health").status_code == 200


def test_an_upload_over_the_limit_gets_413(client):
    answer = client.post("/predict", files=[("files", ("big.jpg", b"\xff" * 300_000))])
    assert answer.status_code == 413
    assert "limit of 200,000 bytes" in answer.json()["error"]
    assert client.post("/predict", files=[("files", ("ok.jpg", jpeg_of_a_garment()))]).status_code == 200


def test_a_request_without_files_is_refused(client):
    assert client.post("/predict").status_code == 422


def test_the_page_and_the_schema(client):
    page = client.get("/")
    assert page.status_code == 200 and '<input id="file" type="file"' in page.text
    assert "/predict" in client.get("/openapi.json").json()["paths"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def live_server(classifier):
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(classifier), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(timeout=10)


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed (make test installs it)")
def test_the_page_in_a_browser_shows_the_prediction(live_server, classifier, tmp_path):
    from playwright.sync_api import sync_playwright

    picture = tmp_path / "shirt.jpg"
    picture.write_bytes(jpeg_of_a_garment())
    expected = classifier.probabilities(np.stack([to_dataset_domain(Image.open(picture))])).argmax()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(live_server)
            page.set_input_files("#file", str(picture))
            page.wait_for_selector("#result", state="visible", timeout=20_000)
            assert page.text_content("#label") == CLASSES[expected]
            assert page.locator(".bar").count() == 10
            assert page.get_attribute("#seen", "src").startswith("data:image/png;base64,")
        finally:
            browser.close()
