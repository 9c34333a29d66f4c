"""The inference benchmark's bookkeeping (its timings are printed, never asserted) and its report section."""

import json

import pytest

from fashionclf.bench import bench_run
from fashionclf.evaluate import evaluate_run
from fashionclf.report import build_report


@pytest.fixture(scope="module")
def bench(quantized_run):
    return bench_run(quantized_run.root, rounds=1, single_calls=3, batch_calls=1)


def test_every_file_and_backend_gets_a_row_with_ratios_to_the_peers(bench, quantized_run):
    quantization = json.loads(quantized_run.quantization.read_text())
    expected = {(m, b) for m, entry in quantization["methods"].items() for b in entry["files"]}
    assert {(r["method"], r["backend"]) for r in bench["rows"]} == expected
    by_key = {(r["method"], r["backend"]): r for r in bench["rows"]}
    assert by_key[("fp32", "eager")]["vs"]["eager_fp32"] == {"throughput": 1.0, "latency": 1.0}
    for name, group in (
        ("fp32", [("fp32", "onnxruntime"), ("fp32", "openvino")]),
        ("int8", [(m, b) for m in ("ort-static", "ov-static") for b in ("onnxruntime", "openvino")]),
    ):
        present = [by_key[key] for key in group if key in by_key]
        fastest = max(present, key=lambda r: r["images_per_s"])
        assert fastest["vs"][f"best_peer_{name}"]["throughput"] == 1.0
        assert all(r["vs"][f"best_peer_{name}"]["throughput"] <= 1.0 for r in present)  # fmt: skip
    for row in bench["rows"]:
        assert row["latency_us"]["p99"] >= row["latency_us"]["median"] > 0
        assert row["gflops"] == pytest.approx(row["images_per_s"] * 8_671_200 / 1e9)
    assert json.loads(quantized_run.bench.read_text())["rows"] == json.loads(json.dumps(bench["rows"]))


def test_the_goals_are_judged_on_the_measured_rows(bench):
    assert set(bench["goals"]) == {
        "int8_accuracy_drop_points",
        "int8_size_vs_fp32",
        "int8_throughput_vs_best_peer_int8",
        "int8_latency_vs_fastest_peer",
        "fp32_throughput_vs_best_peer_fp32",
    }
    rows = {(r["method"], r["backend"]): r for r in bench["rows"]}
    best, peer = bench["best"]["int8"]["batch"], bench["best_peer"]["int8"]["batch"]
    assert peer["method"] in ("ort-static", "ov-static")
    ratio = (
        rows[(best["method"], best["backend"])]["images_per_s"]
        / rows[(peer["method"], peer["backend"])]["images_per_s"]
    )
    assert bench["goals"]["int8_throughput_vs_best_peer_int8"]["value"] == pytest.approx(ratio)
    assert bench["runtimes"]["openvino"]["PERFORMANCE_HINT"] == "LATENCY"
    assert bench["goals"]["int8_size_vs_fp32"]["met"]


def test_the_report_gains_the_optimization_section(bench, quantized_run, real_data):
    assert (quantized_run.figures / "bench.png").is_file()
    evaluate_run(quantized_run.root, data=real_data)
    build_report(quantized_run.root)
    text = quantized_run.report_md.read_text()
    section = text[text.index("## Optimization") :]
    assert "Why the seed's dynamic quantization gives no speed-up" in section
    assert section.count("\n| ") >= 1 + len(bench["rows"])
    assert "figures/bench.png" in section
