"""Every registered backbone x task head: shapes, gradients, finite loss, sizing from input shape."""

import pytest
import torch

from specsweep.backbones import BACKBONES, BCResNet, backbone_param_names, build_backbone

HEADS = {"utterance": 12, "frames": 40}


@pytest.mark.parametrize("name", BACKBONES.names())
@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("bins", [10, 40])
def test_backbone_shapes_and_gradients(name, head, bins):
    torch.manual_seed(0)
    outputs = HEADS[head]
    net = build_backbone({"name": name}, (bins, 101), outputs, head)
    x = torch.randn(3, bins, 101)
    y = net(x)
    assert y.shape == ((3, outputs) if head == "utterance" else (3, 101, outputs))
    if head == "utterance":
        loss = torch.nn.functional.cross_entropy(y, torch.tensor([0, 1, 2]))
    else:
        log_probs = y.log_softmax(-1).transpose(0, 1)
        loss = torch.nn.functional.ctc_loss(log_probs, torch.tensor([[1, 2, 3]] * 3), torch.tensor([101] * 3),
                                            torch.tensor([3] * 3))
    assert torch.isfinite(loss)
    loss.backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert any(p.grad.abs().sum() > 0 for p in net.parameters())


def test_bcresnet1_parameter_count():
    # BC-ResNet-1 of Kim et al. 2021 is reported at 9.2k parameters for 40 Mel bins.
    net = BCResNet((40, 101), 12)
    assert sum(p.numel() for p in net.parameters()) == 9252


def test_bcresnet_width_scales_channels():
    small = sum(p.numel() for p in BCResNet((40, 101), 12).parameters())
    wide = sum(p.numel() for p in BCResNet((40, 101), 12, width=2).parameters())
    assert wide > 2.5 * small


def test_frames_head_keeps_variable_time():
    net = build_backbone({"name": "bcresnet"}, (40, 101), 30, "frames").eval()
    assert net(torch.randn(2, 40, 57)).shape == (2, 57, 30)


def test_simple_lstm_hidden_size_is_an_argument():
    net = build_backbone({"name": "simple", "hidden_size": 16}, (20, 50), 10, "frames")
    assert net.lstm.hidden_size == 16 and net.lstm.bidirectional


def test_unknown_backbone_option_is_rejected():
    with pytest.raises(ValueError, match="no option"):
        build_backbone({"name": "bcresnet", "channels": 3}, (40, 101), 12, "utterance")
    assert "width" in backbone_param_names("bcresnet")
