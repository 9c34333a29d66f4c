"""The web service through FastAPI's test client, a live server for what only a real connection shows (streaming,
concurrency), and its page in a real browser (headless Chromium)."""

import base64
import io
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from fashionclf.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
from fashionclf.explain import explainer_for
from fashionclf.inference import Classifier
from fashionclf.listener import listen
from fashionclf.listener import url as url_of
from fashionclf.models import create_model
from fashionclf.preprocess import FASHION_MNIST_CLASSES, to_dataset_domain
from fashionclf.serve import Batcher, Limits, create_app
from fashionclf.serve import server as uvicorn_server

from pictures import png_header_only


def jpeg_of_a_garment() -> bytes:
    pixels = np.full((300, 240), 235, dtype=np.uint8)
    pixels[40:260, 90:150] = 30
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    torch.manual_seed(0)
    return Classifier(logits_of=create_model("fashion_cnn").eval(), description="untrained fashion_cnn")


LIMITS = Limits(bytes=200_000, files=3, pixels=1_000_000)


@pytest.fixture
def client(classifier):
    return TestClient(create_app(classifier, LIMITS))


def test_health_names_the_model_its_classes_and_input(client):
    health = client.get("/health").json()
    assert (health["status"], health["model"], health["classes"]) == (
        "ok",
        "untrained fashion_cnn",
        list(FASHION_MNIST_CLASSES),
    )
    assert health["input"] == {"preprocessing": "fashion-mnist", "channels": 1, "size": 28}


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


def explainer_of(classifier: Classifier, loads: list | None = None):
    """The loader that `fashionclf serve` gives the app, for the test classifier's model; each load is counted."""

    def load():
        (loads if loads is not None else []).append(1)
        return explainer_for(classifier.logits_of, classifier.spec)

    return load


def test_predict_with_explain_adds_the_top_classes_heat_maps_and_where_they_lie(classifier):
    loads: list = []
    client = TestClient(create_app(classifier, LIMITS, explainer=explainer_of(classifier, loads)))
    upload = [("files", ("shirt.jpg", jpeg_of_a_garment(), "image/jpeg"))]
    plain = client.post("/predict", files=upload)
    assert "heat_maps" not in plain.json()["predictions"][0] and not loads  # no cost when not asked for
    (prediction,) = client.post("/predict?top_k=5&explain=true", files=upload).json()["predictions"]
    assert [m["class"] for m in prediction["heat_maps"]] == [t["class"] for t in prediction["top_k"][:3]]
    heat = Image.open(io.BytesIO(base64.b64decode(prediction["heat_maps"][0]["png"])))
    assert heat.mode == "RGBA" and heat.size == (28, 28) and np.asarray(heat)[..., 3].max() > 0
    # The 240x300 picture's dark bar (rows 40-260, columns 90-150) is framed in a 220-pixel square around it.
    expected = {"left": 10 / 240, "top": 40 / 300, "width": 220 / 240, "height": 220 / 300}
    assert prediction["placement"] == pytest.approx(expected, abs=0.02)
    assert prediction["top_k"][:3] == plain.json()["predictions"][0]["top_k"]


def test_explain_is_refused_in_json_where_the_server_has_no_pytorch_model(client):
    answer = client.post("/predict?explain=true", files=[("files", ("shirt.jpg", jpeg_of_a_garment()))])
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("heat maps need the model's PyTorch weights")


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


def test_a_request_without_files_gets_a_json_422(client):
    answer = client.post("/predict")
    assert answer.status_code == 422 and answer.json() == {"error": "files: Field required"}
    answer = client.post("/predict?top_k=99", files=[("files", ("a.jpg", jpeg_of_a_garment()))])
    assert answer.status_code == 422 and answer.json()["error"].startswith("top_k: ")


@pytest.mark.parametrize(("limit", "count"), [(3, 4), (32, 1001)])  # 1,001: past the form parser's own default
def test_too_many_files_in_one_request_get_413(classifier, limit, count):
    client = TestClient(create_app(classifier, Limits(files=limit)))
    answer = client.post("/predict", files=[("files", (f"{i}.jpg", b"not read")) for i in range(count)])
    assert answer.status_code == 413
    assert answer.json() == {"error": f"request holds more files than the limit of {limit}"}


def test_a_limit_over_a_thousand_files_is_the_servers_own(classifier):
    """The form parser's default of 1,000 files does not cut a larger --max-files short: each file is read."""
    client = TestClient(create_app(classifier, Limits(files=1001)))
    answer = client.post("/predict", files=[("files", (f"{i}.png", b"not a picture")) for i in range(1001)])
    assert answer.status_code == 400 and answer.json()["error"].startswith("0.png: not an image")


def test_too_many_pixels_in_one_request_get_413_before_any_is_decoded(client):
    """The headers say 2 x 640,000 pixels (and hold none): refused on the sizes alone."""
    header = png_header_only(800, 800)
    answer = client.post("/predict", files=[("files", ("a.png", header)), ("files", ("b.png", header))])
    assert answer.status_code == 413
    assert answer.json()["error"] == "the pictures hold 1,280,000 pixels in all, over the limit of 1,000,000 a request"


def test_an_unknown_path_gets_a_json_404(client):
    answer = client.get("/nope")
    assert answer.status_code == 404 and answer.json() == {"error": "Not Found"}


@pytest.mark.parametrize("path", ["/", "/health", "/docs"])
def test_head_is_answered_wherever_get_is(client, path):
    got, head = client.get(path), client.head(path)
    assert head.status_code == 200
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers["content-length"] == str(len(got.content))


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("DELETE", "/health", "GET, HEAD"), ("GET", "/predict", "POST"), ("HEAD", "/predict", "POST")],
)
def test_a_wrong_method_gets_a_json_405_with_the_methods_allowed(client, method, path, allowed):
    answer = client.request(method, path)
    assert answer.status_code == 405 and answer.headers["allow"] == allowed
    assert answer.headers["content-type"] == "application/json"


def test_a_failing_model_gets_a_json_500_and_the_server_keeps_serving():
    def broken(images: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("the model's file went away")

    with TestClient(create_app(Classifier(logits_of=broken, description="broken")), raise_server_exceptions=False) as c:
        response = c.post("/predict", files={"files": ("shirt.jpg", jpeg_of_a_garment(), "image/jpeg")})
        assert response.status_code == 500
        assert response.json() == {"error": "the server failed on this request (RuntimeError)"}
        assert c.get("/health").status_code == 200


def test_the_page_the_schema_and_the_docs_need_no_other_host(client):
    page = client.get("/")
    assert page.status_code == 200 and '<input id="file" type="file"' in page.text
    assert "/predict" in client.get("/openapi.json").json()["paths"]
    docs = client.get("/docs").text
    assets = re.findall(r'(?:src|href)="([^"]+)"', docs) + re.findall(r"url: '([^']+)'", docs)
    assert assets and all(asset.startswith("/") for asset in assets), assets
    for asset in assets:
        assert client.get(asset).status_code == 200, asset


class Gate:
    """A model that blocks until released, recording the batch size of every call."""

    def __init__(self):
        self.entered, self.release, self.calls = threading.Event(), threading.Event(), []

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.calls.append(len(images))
        self.entered.set()
        assert self.release.wait(timeout=30)
        return torch.zeros(len(images), 10)


def test_the_batcher_gathers_waiting_pictures_into_one_model_call():
    gate = Gate()
    batcher = Batcher(Classifier(logits_of=gate, description="gate"))
    try:
        first = batcher.classify(np.zeros((1, 1, 28, 28), dtype=np.uint8))
        assert gate.entered.wait(timeout=30)
        waiting = [batcher.classify(np.zeros((n, 1, 28, 28), dtype=np.uint8)) for n in (1, 2, 1)]
        gate.release.set()
        assert first.result(timeout=30).shape == (1, 10)
        assert [future.result(timeout=30).shape for future in waiting] == [(1, 10), (2, 10), (1, 10)]
        assert gate.calls == [1, 4]
    finally:
        gate.release.set()
        batcher.close()


def test_health_answers_while_a_prediction_is_running():
    """The model is held inside a call; the event loop must still answer (it used to run the model itself)."""
    gate = Gate()
    with live_server(Classifier(logits_of=gate, description="gate")) as url, ThreadPoolExecutor(1) as pool:
        pending = pool.submit(httpx.post, url + "predict", files=[("files", ("a.jpg", jpeg_of_a_garment()))],
                              timeout=60)  # fmt: skip
        try:
            assert gate.entered.wait(timeout=30)
            assert httpx.get(url + "health", timeout=5).status_code == 200
        finally:
            gate.release.set()
        assert pending.result().status_code == 200


def test_a_request_that_is_not_http_gets_a_json_400(classifier):
    """Refused by uvicorn itself, before the app: a raw socket sees what a client gets."""
    with live_server(classifier) as url:
        for request in (b"NOT HTTP\r\n\r\n", b"GET /health HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n"):
            with socket.create_connection((httpx.URL(url).host, httpx.URL(url).port), timeout=30) as connection:
                connection.sendall(request)
                answer = connection.makefile("rb").read()
            head, body = answer.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 400 ") and b"content-type: application/json" in head.lower()
            assert json.loads(body) == {"error": "Invalid HTTP request received."}


@pytest.fixture
def model_file(tmp_path) -> Path:
    path = tmp_path / "model.pt"
    torch.manual_seed(0)
    save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "model": "fashion_cnn", "model_args": {},
                           "state_dict": create_model("fashion_cnn").state_dict()})  # fmt: skip
    return path


def peak_memory_mb(pid: int) -> int:
    return int(re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text()).group(1)) // 1024


def test_a_chunked_upload_of_a_gigabyte_is_refused_as_it_streams_in(model_file, tmp_path):
    """No Content-Length: the body is counted as it arrives and refused at the limit (1 MB here), never read on,
    spooled to disk or held in memory."""
    spool = tmp_path / "spool"
    spool.mkdir()
    env = {**os.environ, "TMPDIR": str(spool)}
    command = [sys.executable, "-m", "fashionclf", "serve", str(model_file), "--port", "0", "--max-mb", "1"]
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = served_url(server)
        wait_for_health(url, server)
        before = peak_memory_mb(server.pid)
        status, sent = chunked_upload(httpx.URL(url).port, total=1 << 30)
        assert status == 413
        assert sent < 64 << 20, f"the server read {sent:,} bytes before refusing"
        assert peak_memory_mb(server.pid) - before < 50
        assert not list(spool.iterdir())
    finally:
        server.terminate()
        server.wait(timeout=30)


def chunked_upload(port: int, total: int, chunk: int = 1 << 16) -> tuple[int, int]:
    """Send a multipart upload of `total` bytes in chunks (no Content-Length), stopping as soon as an answer comes;
    return the answer's status and how many bytes were sent by then."""
    boundary = "fashionclfboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode()  # fmt: skip
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(
            f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n".encode()
        )
        sent, payload = 0, b"\xff" * chunk
        connection.sendall(b"%x\r\n%s\r\n" % (len(head), head))
        while sent < total:
            readable, _, _ = select.select([connection], [], [], 0)
            if readable:
                break
            try:
                connection.sendall(b"%x\r\n%s\r\n" % (chunk, payload))
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += chunk
        answer = connection.recv(4096).decode("latin-1")
    return int(answer.split()[1]), sent


def served_url(server: subprocess.Popen) -> str:
    """The address that `fashionclf serve --port 0` says it serves, with the port it was given."""
    assert server.stdout is not None
    readable, _, _ = select.select([server.stdout], [], [], 60)
    assert readable, "the server did not say where it serves"
    line = server.stdout.readline()
    assert line.startswith("serving on http://127.0.0.1:"), line
    return line.split()[2]


def wait_for_health(url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert server.poll() is None and time.monotonic() < deadline, "server did not start"
        try:
            if httpx.get(url + "health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)


@contextmanager
def live_server(classifier, explainer=None):
    with listen("127.0.0.1", 0) as listener:
        server = uvicorn_server(create_app(classifier, explainer=explainer))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        try:
            yield url_of(listener)
        finally:
            server.should_exit = True
            thread.join(timeout=10)


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module's page tests: starting it is most of their time."""
    if not shutil.which("chromium"):
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def tab(browser):
    tab = browser.new_page()
    yield tab
    tab.close()


@pytest.fixture
def photos(tmp_path) -> tuple[Path, Path]:
    """A garment picture and a text file given as a picture."""
    picture, notes = tmp_path / "shirt.jpg", tmp_path / "notes.txt"
    picture.write_bytes(jpeg_of_a_garment())
    notes.write_text("not a picture")
    return picture, notes


def wait_for_error(tab) -> str:
    tab.wait_for_function("document.getElementById('error').textContent !== ''", timeout=20_000)
    return tab.text_content("#error")


def test_the_page_in_a_browser_shows_the_prediction(classifier, tab, photos):
    picture, _ = photos
    expected = classifier.probabilities(np.stack([to_dataset_domain(Image.open(picture))])).argmax()
    with live_server(classifier) as url:
        tab.goto(url)
        tab.set_input_files("#file", str(picture))
        tab.wait_for_selector(".bar", state="visible", timeout=20_000)
        assert tab.text_content("#label") == FASHION_MNIST_CLASSES[expected]
        assert tab.locator(".bar").count() == 10
        assert tab.get_attribute("#seen", "src").startswith("data:image/png;base64,")


def test_the_page_shows_an_error_without_the_last_answer(classifier, tab, photos):
    picture, notes = photos
    with live_server(classifier) as url:
        tab.goto(url)
        tab.set_input_files("#file", str(picture))
        tab.wait_for_selector(".bar", state="visible", timeout=20_000)
        tab.set_input_files("#file", str(notes))
        assert wait_for_error(tab).startswith("notes.txt: not an image")
        assert not tab.is_visible("#label") and not tab.is_visible("#seen")
        assert tab.locator(".bar:visible").count() == 0


def test_the_page_does_not_show_an_answer_that_comes_after_a_later_error(tab, photos):
    """The model holds the first picture; a text file is given meanwhile, and its error is shown; the first
    picture's answer, arriving after it, must not appear beside the error and the text file."""
    picture, notes = photos
    gate = Gate()
    with live_server(Classifier(logits_of=gate, description="gate")) as url:
        try:
            tab.goto(url)
            tab.set_input_files("#file", str(picture))
            assert gate.entered.wait(timeout=30)
            tab.set_input_files("#file", str(notes))
            assert wait_for_error(tab).startswith("notes.txt: not an image")
            with tab.expect_response(lambda response: "/predict" in response.url) as late:
                gate.release.set()
            assert late.value.status == 200
            late.value.finished()  # waits for its body too
        finally:
            gate.release.set()
        tab.evaluate("() => fetch('health').then(() => null)")  # a round trip through the page after it
        assert not tab.is_visible("#label") and tab.text_content("#error").startswith("notes.txt")


def test_the_page_says_when_the_server_cannot_be_reached(classifier, tab, photos):
    picture, _ = photos
    with live_server(classifier) as url:
        tab.goto(url)
    tab.set_input_files("#file", str(picture))
    assert "could not be reached" in wait_for_error(tab)


def test_the_page_draws_the_heat_map_over_the_picture_only_when_turned_on(classifier, tab, photos):
    picture, _ = photos
    with live_server(classifier, explainer_of(classifier)) as url:
        tab.goto(url)
        asked: list[str] = []
        tab.on("request", lambda request: asked.append(request.url) if "/predict" in request.url else None)
        tab.set_input_files("#file", str(picture))
        tab.wait_for_selector(".bar", state="visible", timeout=20_000)
        stage = tab.locator(".stage").first
        without = np.asarray(Image.open(io.BytesIO(stage.screenshot())).convert("RGB")).astype(int)
        assert not tab.is_visible("#heat-given") and "explain" not in asked[0]
        tab.check("#explain")
        tab.wait_for_selector("#heat-given", state="visible", timeout=20_000)
        assert len(asked) == 2 and "explain=true" in asked[1]
        given, heat = (tab.locator(selector).bounding_box() for selector in ("#given", "#heat-given"))
        assert given is not None and heat is not None
        placement = tab.evaluate("() => shown.prediction.placement")
        for edge, extent, fraction in (("x", "width", "left"), ("y", "height", "top")):
            assert heat[edge] == pytest.approx(given[edge] + placement[fraction] * given[extent], abs=1.5)
        drawn = np.asarray(Image.open(io.BytesIO(stage.screenshot())).convert("RGB")).astype(int)
        assert drawn.shape == without.shape and (np.ptp(drawn, axis=2) > 40).mean() > 0.02  # colour over grey
        assert (np.ptp(without, axis=2) > 40).mean() == 0
        tab.uncheck("#explain")
        assert not tab.is_visible("#heat-given") and len(asked) == 2
