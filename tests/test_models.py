"""Every model builds, trains one optimizer step on tiny data on the CPU, and has the size its
design implies (counts derived from the architecture, or published for it)."""

import pytest
import torch
import torch.nn.functional as F

from hpstudy.models import MODEL_FACTORIES, Resize, build_model, count_parameters

torch.set_num_threads(1)  # 2 shared cores: a second thread only oversubscribes them


def record_shape(store: dict, key: str):
    """A forward hook that notes an input or output shape and leaves the output alone."""

    def hook(module, inputs, output):
        store[key] = (inputs[0] if key == "in" else output).shape

    return hook


# name -> (in_channels, image side); tiny inputs keep the step cheap on 2 shared cores
SHAPES = {
    "resnet_shallow": (1, 16),
    "resnet18": (3, 16),
    "resnet18_imagenet": (3, 16),
    "preact_resnet18": (3, 16),
    "lenet": (1, 16),
    "mlp": (1, 16),
}


def test_every_config_model_has_a_factory():
    from hpstudy.config import MODELS

    assert set(MODELS) == set(MODEL_FACTORIES) == set(SHAPES)


@pytest.mark.parametrize("name", sorted(SHAPES))
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_one_training_step_updates_every_weight_downhill(name, task):
    torch.manual_seed(0)
    channels, side = SHAPES[name]
    outputs = 5 if task == "classification" else 1
    model = build_model(name, channels, outputs, side)
    x = torch.randn(4, channels, side, side)
    y = torch.arange(4) % outputs if task == "classification" else torch.randn(4, 1)
    loss_fn = F.cross_entropy if task == "classification" else F.mse_loss
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)  # small: first order holds
    model.train()
    out = model(x)
    assert out.shape == (4, outputs)
    loss = loss_fn(out, y)
    loss.backward()
    assert all(
        p.grad is not None and torch.isfinite(p.grad).all()
        for p in model.parameters()
        if p.requires_grad
    )
    opt.step()
    changed = sum(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert changed == len(before)
    with torch.no_grad():  # same batch, train-mode BN: a small step along -grad lowers it
        assert loss_fn(model(x), y).item() < loss.item()


def test_resnet18_cifar_has_the_reports_parameter_count():
    # report 004: "Total Parameters 11,173,962" for ResNet-18 on CIFAR-10
    assert count_parameters(build_model("resnet18", 3, 10, 32)) == 11_173_962


def test_resnet18_cifar_forward_cost_matches_the_report():
    # report 004: 556,652,554 FLOPs per image (multiply-accumulates, incl. BN/ReLU/adds);
    # torch's counter counts 2 FLOPs per MAC for convs and linears only
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model("resnet18", 3, 10, 32).eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.zeros(1, 3, 32, 32))
    macs = counter.get_total_flops() / 2
    assert abs(macs - 556_652_554) / 556_652_554 < 0.01


def test_resnet18_cifar_stem_keeps_resolution():
    model = build_model("resnet18", 3, 10, 32)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
    seen = {}
    model.layer1.register_forward_hook(record_shape(seen, "layer1"))
    model.layer4.register_forward_hook(record_shape(seen, "layer4"))
    model(torch.zeros(1, 3, 32, 32))
    assert seen["layer1"][-2:] == (32, 32) and seen["layer4"][-2:] == (4, 4)


def test_resnet18_imagenet_is_torchvisions_and_upsamples_on_the_device():
    # torchvision's ResNet-18 with 1000 classes has 11,689,512 parameters
    assert count_parameters(build_model("resnet18_imagenet", 3, 1000, 224)) == 11_689_512
    model = build_model("resnet18_imagenet", 3, 10, 64)  # upsample 32 -> 64 (cheap stand-in)
    resize, net = model[0], model[1]
    assert isinstance(resize, Resize) and net.conv1.kernel_size == (7, 7)
    seen = {}
    net.conv1.register_forward_hook(record_shape(seen, "in"))
    model(torch.zeros(2, 3, 32, 32))
    assert seen["in"] == (2, 3, 64, 64)
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(resize(x), x)  # already at size: untouched


def test_preact_resnet18_differs_from_resnet18_only_in_normalisation():
    """Same convolutions and head as the CIFAR ResNet-18; BN parameters move: no stem BN, no
    BN on the shortcut convs, bn1 sees the block input (c_in), and a final BN(512)."""
    resnet = count_parameters(build_model("resnet18", 3, 10, 32))
    bn = 2  # weight + bias per channel
    stem_bn = bn * 64
    shortcut_bns = bn * (128 + 256 + 512)
    bn1_in_vs_out = bn * ((64 - 128) + (128 - 256) + (256 - 512))
    final_bn = bn * 512
    expected = resnet - stem_bn - shortcut_bns + bn1_in_vs_out + final_bn
    assert count_parameters(build_model("preact_resnet18", 3, 10, 32)) == expected


@pytest.mark.parametrize("channels, side, classes", [(1, 28, 10), (3, 32, 10), (3, 32, 100)])
def test_lenet_and_mlp_sizes_follow_their_layer_formulas(channels, side, classes):
    s = ((side - 4) // 2 - 4) // 2
    lenet = (
        6 * (channels * 25 + 1)
        + 16 * (6 * 25 + 1)
        + (16 * s * s + 1) * 120
        + (120 + 1) * 84
        + (84 + 1) * classes
    )
    assert count_parameters(build_model("lenet", channels, classes, side)) == lenet
    mlp = (channels * side * side + 1) * 512 + (512 + 1) * 256 + (256 + 1) * classes
    assert count_parameters(build_model("mlp", channels, classes, side)) == mlp


def test_resnet_shallow_keeps_the_labs_size():
    assert count_parameters(build_model("resnet_shallow", 1, 1, 64)) == 1_260_129


def test_unknown_model_and_too_small_lenet_are_clear_errors():
    with pytest.raises(ValueError, match="model 'vgg' is not available; known: "):
        build_model("vgg", 3, 10, 32)
    with pytest.raises(ValueError, match="at least 16x16"):  # 12 was said before: wrong
        build_model("lenet", 1, 10, 15)


def test_upsampling_is_only_accepted_where_a_model_has_the_layer():
    from hpstudy.config import ConfigError, TrainConfig

    assert TrainConfig(model="resnet18_imagenet", upsample_size=224).upsample_size == 224
    with pytest.raises(ConfigError, match="upsample_size=64 is not allowed; expected null unless"):
        TrainConfig(model="lenet", upsample_size=64)


def _trains(name: str, side: int, batch: int) -> bool:
    """One training forward and backward pass of `batch` images of `side` pixels."""
    try:
        model = build_model(name, 1, 1, side).train()
        model(torch.zeros(batch, 1, side, side)).sum().backward()
    except ValueError:  # too small for lenet's layers, or BatchNorm on one value per channel
        return False
    return True


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_the_smallest_image_each_model_trains_on_is_what_the_study_check_assumes(name):
    """config.MIN_IMAGE_SIZE and MIN_IMAGE_SIZE_ONE_IMAGE (hpstudy.data_checks refuses a
    study below them before any job): each model trains at its minimum and fails one pixel
    below, with two images a batch and with one."""
    from hpstudy.config import MIN_IMAGE_SIZE, MIN_IMAGE_SIZE_ONE_IMAGE

    least = MIN_IMAGE_SIZE.get(name, 1)
    assert _trains(name, least, 2)
    assert least == 1 or not _trains(name, least - 1, 2)
    alone = MIN_IMAGE_SIZE_ONE_IMAGE.get(name, least)
    assert _trains(name, alone, 1)
    assert alone == least or not _trains(name, alone - 1, 1)
