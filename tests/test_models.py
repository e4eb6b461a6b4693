import pytest
import torch

from selfsup.errors import ConfigError
from selfsup.models import Encoder, build_backbone, load_encoder, save_encoder


@pytest.mark.parametrize("name,dim", [("resnet18", 512), ("resnet34", 512), ("resnet50", 2048)])
def test_resnets_use_the_cifar_stem_for_small_images(name, dim):
    net = build_backbone(name, in_channels=3, image_size=32)
    conv = net.conv1
    assert (conv.kernel_size, conv.stride, conv.padding) == ((3, 3), (1, 1), (1, 1))
    assert isinstance(net.maxpool, torch.nn.Identity)
    assert net.out_dim == dim
    if name == "resnet18":
        net.eval()
        assert net(torch.rand(2, 3, 32, 32)).shape == (2, dim)
        # the stem keeps 32×32: the last stage sees 4×4 maps (not 5×5 as with padding 2)
        shapes = []
        net.layer4.register_forward_hook(lambda m, i, o: shapes.append(o.shape))
        net(torch.rand(1, 3, 32, 32))
        assert shapes[0][-2:] == (4, 4)


def test_imagenet_stem_for_large_images_and_by_choice():
    assert build_backbone("resnet18", 3, 224).conv1.stride == (2, 2)
    assert build_backbone("resnet18", 3, 32, stem="imagenet").conv1.stride == (2, 2)
    assert build_backbone("resnet18", 1, 32).conv1.in_channels == 1


def test_small_cnn_for_digits():
    net = build_backbone("small_cnn", in_channels=1, image_size=8, width=16)
    assert net(torch.rand(3, 1, 8, 8)).shape == (3, 64)


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown backbone 'vgg'.*resnet18"):
        build_backbone("vgg", 3, 32)


def test_encoder_round_trip_through_safetensors(tmp_path):
    torch.manual_seed(0)
    encoder = Encoder("small_cnn", in_channels=1, image_size=8, mean=[0.3], std=[0.4], width=8).eval()
    save_encoder(encoder, tmp_path, extra={"method": "simclr"})
    loaded = load_encoder(tmp_path)
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(encoder(x), loaded(x))
    assert not loaded.training


def test_loading_from_a_directory_without_encoder_is_a_clear_error(tmp_path):
    with pytest.raises(Exception, match="no trained encoder"):
        load_encoder(tmp_path)
