from dataclasses import asdict

from fashionclf.config import TrainConfig
from fashionclf.report import _heaviest_and_slowest, training_recipe


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


def test_the_report_states_the_recipe_the_run_recorded():
    seed = TrainConfig.from_recipe("seed", seed=3)
    assert training_recipe(asdict(seed)) == (
        "Recipe `seed`: Adam, learning rate 0.001 (constant), batch 100, 5 epochs, seed 3; channels-last layout, "
        "bf16 autocast (weights and optimizer in float32)."
    )
    best = training_recipe(asdict(TrainConfig.from_recipe("best", bf16=False)))
    assert best.startswith("Recipe `best`: AdamW, learning rate 0.002 (one-cycle), weight decay 0.01, batch 128, 48")
    assert "random crops after 2-pixel padding, horizontal flips, a moving average of the weights (decay 0.999)" in best
    assert best.endswith("float32 arithmetic.")
    assert "SGD with Nesterov momentum 0.9" in training_recipe(asdict(TrainConfig.from_recipe("resnet")))
