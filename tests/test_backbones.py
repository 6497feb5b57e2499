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


# The original study's models (heungky/trainable-STFT-Mel), counted from its model code:
# KWS has 12 classes; ASR has 61 TIMIT phones + the CTC blank = 62 outputs.
PAPER_COUNTS = [
    ("bcresnet", "utterance", 12, 9160),
    ("bcresnet", "frames", 62, 29640),
    ("simple", "utterance", 12, 48492),
    ("simple", "frames", 62, 22974),
]


@pytest.mark.parametrize("name,head,outputs,count", PAPER_COUNTS)
def test_paper_model_parameter_counts(name, head, outputs, count):
    net = build_backbone({"name": name}, (40, 101), outputs, head)
    assert sum(p.numel() for p in net.parameters()) == count


def test_bcresnet_official_switches():
    """Kim et al.'s BC-ResNet-1 (normalised stem and head, bias in the classifier) is a
    configuration of the same class."""
    official = BCResNet((40, 101), 12, stem_norm=True, head_norm=True, classifier_bias=True, transition_dropout=None)
    assert sum(p.numel() for p in official.parameters()) == 9160 - 16 + 32 + 64 + 12
    drops = [m.p for m in official.modules() if isinstance(m, torch.nn.Dropout2d)]
    assert set(drops) == {0.1}
    study = [m.p for m in BCResNet((40, 101), 12).modules() if isinstance(m, torch.nn.Dropout2d)]
    assert study.count(0.5) == 4 and study.count(0.1) == 8


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
