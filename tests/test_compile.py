"""``train.compile``: the compiled model computes what the eager one does (CPU, where compile runs here)."""

from __future__ import annotations

import copy

import pytest
import torch

from specsweep.data.datasets import PreparedData
from specsweep.data.speechcommands import CLASSES, CLIP_SAMPLES
from specsweep.spec import TrainConfig, TrialConfig
from specsweep.trainables.trial import build_trial_task


@pytest.mark.kernel_path
def test_compiled_training_step_equals_eager_within_tolerance():
    # The smallest model with every kind of parameter (STFT kernels, Mel basis, backbone) trainable,
    # so that compiling stays well under a minute on two cores.
    config = TrialConfig(task="kws", seed=0, data={"name": "embedded_kws"},
                         frontend={"name": "nnaudio", "n_fft": 480, "hop_length": 160, "n_mels": 40, "setting": "D"},
                         backbone={"name": "simple"}, train=TrainConfig(lr=0.01, compile=True))
    data = PreparedData("kws", list(CLASSES), {}, 16000, CLIP_SAMPLES)
    torch.manual_seed(0)
    compiled = build_trial_task(config, data)
    eager = copy.deepcopy(compiled)
    eager.net = build_trial_task(config.model_copy(update={"train": TrainConfig(lr=0.01)}), data).net
    eager.net.load_state_dict(compiled.net.state_dict())
    # Compiling in place keeps parameter names: checkpoints and figures see the eager model.
    assert list(compiled.state_dict()) == list(eager.state_dict())
    assert compiled.net._compiled_call_impl is not None and eager.net._compiled_call_impl is None
    waves, targets = torch.randn(4, CLIP_SAMPLES) * 0.1, torch.tensor([0, 3, 7, 11])
    results = []
    for task in (compiled, eager):
        logits = task(waves)
        loss = task.loss_fn(logits, targets)
        loss.backward()
        results.append((logits.detach(), {n: p.grad for n, p in task.named_parameters() if p.grad is not None}))
    (logits_c, grads_c), (logits_e, grads_e) = results
    torch.testing.assert_close(logits_c, logits_e, rtol=1e-4, atol=1e-5)
    assert grads_c.keys() == grads_e.keys() and len(grads_c) >= 4
    for name, grad in grads_e.items():
        torch.testing.assert_close(grads_c[name], grad, rtol=1e-3, atol=1e-5, msg=name)
