import pytest
import torch

from fashionclf.errors import FashionClfError
from fashionclf.models import ModelSpec, create_model, list_models, model_entry
from fashionclf.networks import count_parameters, example_input, layer_table
from fashionclf.preprocess import FASHION_MNIST_CLASSES, InputFormat

from synthetic import quick_spec


def test_fashion_cnn_has_the_reports_parameter_count():
    assert count_parameters(create_model("fashion_cnn")) == 1_475_338


def test_fashion_cnn_layer_shapes_follow_the_report():
    shapes = {row["name"]: row["output_shape"] for row in layer_table(create_model("fashion_cnn"), (1, 28, 28))}
    assert shapes["layer1.0"] == [32, 28, 28]
    assert shapes["layer1.3"] == [32, 14, 14]
    assert shapes["layer2.0"] == [64, 12, 12]
    assert shapes["layer2.3"] == [64, 6, 6]
    assert shapes["flatten"] == [2304]
    assert shapes["fc1"] == [600]
    assert shapes["fc2"] == [120]
    assert shapes["fc3"] == [10]


def test_the_relu_variant_has_the_same_weights_and_a_non_linear_head():
    torch.manual_seed(0)
    report, variant = create_model("fashion_cnn").eval(), create_model("fashion_cnn_relu").eval()
    variant.load_state_dict(report.state_dict())  # strict: the same parameters, name for name

    def head(x, activation):  # the three linear layers, centred on the zero input
        def through(v):
            return report.fc3(activation(report.fc2(activation(report.fc1(v)))))

        return through(x) - through(torch.zeros_like(x))

    with torch.no_grad():
        features, linear, relu = torch.randn(8, 2304), torch.nn.Identity(), torch.nn.ReLU()
        torch.testing.assert_close(head(2 * features, linear), 2 * head(features, linear), rtol=1e-4, atol=1e-4)
        assert not torch.allclose(head(2 * features, relu), 2 * head(features, relu), atol=1e-2)
        images = example_input(ModelSpec(), batch_size=8)
        assert not torch.allclose(report(images), variant(images), atol=1e-3)


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("classes", [FASHION_MNIST_CLASSES, ("hat", "shoes", "skirt")])
def test_every_model_maps_a_batch_to_a_logit_per_class(name, classes):
    spec = quick_spec(name, classes)
    model = create_model(name, spec).eval()
    assert model(example_input(spec, batch_size=3)).shape == (3, len(classes))


@pytest.mark.parametrize("name", list_models())
def test_every_model_trains_one_step(name):
    spec = quick_spec(name)
    model = create_model(name, spec).train()
    loss = torch.nn.functional.cross_entropy(model(example_input(spec, 4)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_unknown_model_names_the_known_ones():
    with pytest.raises(FashionClfError, match="unknown model 'nope'.*fashion_cnn"):
        model_entry("nope")


def test_a_spec_round_trips_through_its_record():
    spec = ModelSpec(("hat", "shoes"), InputFormat("photo", 3, 96))
    assert ModelSpec.from_dict(spec.as_dict()) == spec
    assert spec.as_dict() == {"classes": ["hat", "shoes"], "preprocessing": "photo", "channels": 3, "size": 96}
    assert ModelSpec.from_dict(None) == ModelSpec() and ModelSpec().input_size == (1, 28, 28)


def test_a_model_refuses_an_input_it_is_not_made_for():
    with pytest.raises(FashionClfError, match="model 'fashion_cnn' takes fashion-mnist input, not photo"):
        create_model("fashion_cnn", ModelSpec(("a", "b"), InputFormat("photo", 3, 64)))


def test_flip_averaging_averages_the_photo_and_its_mirror_image_at_inference_only():
    spec = ModelSpec(("a", "b", "c"), InputFormat("photo", 3, 32))
    model = create_model("photo_resnet9", spec, width=8, flip_average=True).eval()
    photos = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        expected = (model.logits(photos) + model.logits(photos.flip(-1))) / 2
        assert torch.allclose(model(photos), expected)
        assert not torch.allclose(model(photos), model.logits(photos))
        assert torch.allclose(model(photos), model(photos.flip(-1)), atol=1e-5)  # a mirror image: the same answer
    model.train()
    assert model(photos).shape == (4, 3)
