from fashionclf.report import _heaviest_and_slowest


def row(name: str, flop_share: float, time_share: float) -> dict:
    return {
        "name": name,
        "flop_share": flop_share,
        "arithmetic_intensity": 1.0,
        "time": {"batch_256": {"forward_time_share": time_share}},
    }


def test_the_analysis_sentence_contrasts_the_heaviest_and_slowest_layers():
    conv, pool = row("conv", 0.6, 0.15), row("pool", 0.003, 0.4)
    sentence = _heaviest_and_slowest(conv, pool, "batch_256")
    assert (
        "`conv` (60% of FLOPs" in sentence and "yet the slowest at batch 256 is `pool` (40% of forward time" in sentence
    )


def test_the_analysis_sentence_says_when_one_layer_is_both():
    conv = row("conv", 0.6, 0.5)
    assert "is also the slowest" in _heaviest_and_slowest(conv, conv, "batch_256")
