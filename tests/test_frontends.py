"""Every registered front-end in every setting A-D, plus the checks specific to each."""

from __future__ import annotations

import math

import pytest
import torch
import torchaudio
from nnAudio.features import STFT, MelSpectrogram

from specsweep.frontends import (
    FRONTENDS,
    SETTINGS,
    FastAudioFrontEnd,
    NnAudioFrontEnd,
    build_frontend,
    frontend_param_names,
    frontend_setting,
    validate_frontend_config,
)
from specsweep.frontends.stft import PowerSpectrogram
from specsweep.frontends.plot import plot_frontend, snapshot_frontend

CASES = [(name, setting) for name in FRONTENDS for setting in SETTINGS]
STFT_PARAMS = 2 * 241 * 480  # wsin + wcos for n_fft 480
FILTERBANK_PARAMS = {"nnaudio": 40 * 241, "fastaudio": 2 * 40}


def waveform(batch: int = 2, samples: int = 16000, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(batch, samples, generator=torch.Generator().manual_seed(seed))


def flags(name: str, setting: str) -> dict:
    stft, filterbank = SETTINGS[setting]
    return {"trainable_stft": stft, FRONTENDS.get(name).filterbank_flag: filterbank}


@pytest.mark.parametrize("name,setting", CASES)
def test_frontend_contract(name: str, setting: str) -> None:
    fe = build_frontend({"name": name, "setting": setting, "n_mels": 40, "n_fft": 480})
    x = waveform()
    out = fe(x)

    assert out.shape == (2, *fe.output_shape(16000)) == (2, 40, 101)
    assert torch.isfinite(out).all()
    assert fe.setting == setting

    stft, filterbank = SETTINGS[setting]
    assert fe.trainable_parameter_counts() == {
        "stft": STFT_PARAMS if stft else 0,
        "filterbank": FILTERBANK_PARAMS[name] if filterbank else 0,
    }
    parts = fe.parameter_parts()
    assert {id(p) for p in fe.parameters()} == {id(p) for ps in parts.values() for p in ps}
    assert all(p.requires_grad for p in fe.parameters())
    assert not any(b.requires_grad for b in fe.buffers())

    if stft or filterbank:
        out.mean().backward()
    for part, params in parts.items():
        for p in params:
            assert p.grad is not None, part
            assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, part

    assert fe.filterbank().shape == (40, 241)
    kernels = fe.stft_kernels()
    assert (kernels is None) == (not stft)
    if stft:
        assert kernels.shape == (241, 480)
    fe.after_optimizer_step()


@pytest.mark.parametrize("name,setting", CASES)
def test_setting_and_flags_build_the_same_model(name: str, setting: str) -> None:
    torch.manual_seed(1)
    by_setting = build_frontend({"name": name, "setting": setting})
    torch.manual_seed(1)
    by_flags = build_frontend({"name": name, **flags(name, setting)})
    torch.manual_seed(1)
    by_both = build_frontend({"name": name, "setting": setting, **flags(name, setting)})

    x = waveform(1)
    for other in (by_flags, by_both):
        assert other.setting == setting
        assert other.state_dict().keys() == by_setting.state_dict().keys()
        torch.testing.assert_close(other(x), by_setting(x), rtol=0, atol=0)


FLAG_VALUES = ("absent", False, True)


@pytest.mark.parametrize("name", FRONTENDS.names())
@pytest.mark.parametrize("stft", FLAG_VALUES)
@pytest.mark.parametrize("filterbank", FLAG_VALUES)
def test_frontend_setting_names_the_built_model(name: str, stft: object, filterbank: object) -> None:
    """The letter read from a config is the setting of the front-end built from it, for
    flags given or left to the constructor's defaults, with or without the letter itself."""
    config = {"name": name}
    for flag, value in (("trainable_stft", stft), (FRONTENDS.get(name).filterbank_flag, filterbank)):
        if value != "absent":
            config[flag] = value
    built = build_frontend(config).setting
    assert frontend_setting(config) == built
    assert frontend_setting({**config, "setting": None}) == built
    assert frontend_setting({**config, "setting": built}) == built
    assert frontend_setting({"name": name, "setting": built}) == built


def test_frontend_setting_rejects_bad_names_and_letters() -> None:
    with pytest.raises(ValueError, match="name: unknown frontend 'leaf'; allowed: fastaudio, nnaudio"):
        frontend_setting({"name": "leaf"})
    with pytest.raises(ValueError, match="name: missing"):
        frontend_setting({"setting": "A"})
    with pytest.raises(ValueError, match="setting must be one of A, B, C, D, got 'E'"):
        frontend_setting({"name": "nnaudio", "setting": "E"})


@pytest.mark.parametrize("name", FRONTENDS.names())
def test_contradicting_setting_and_flag(name: str) -> None:
    flag = FRONTENDS.get(name).filterbank_flag
    with pytest.raises(ValueError, match=rf"{flag}: setting 'C' means {flag}=False.*{flag}=True"):
        build_frontend({"name": name, "setting": "C", flag: True})
    with pytest.raises(ValueError, match="trainable_stft: setting 'B'"):
        build_frontend({"name": name, "setting": "B", "trainable_stft": True})


@pytest.mark.kernel_path
@pytest.mark.parametrize("name", FRONTENDS.names())
def test_fft_path_equals_conv_path(name: str) -> None:
    """Setting A (torch.stft) and C (nnAudio conv kernels, untrained) compute the same."""
    x = waveform(2, 8000)
    fixed = build_frontend({"name": name, "setting": "A"})
    conv = build_frontend({"name": name, "setting": "C"})
    spec_fft, spec_conv = fixed.spectrogram(x), conv.spectrogram(x)
    torch.testing.assert_close(spec_fft, spec_conv, rtol=0, atol=1e-5 * float(spec_fft.max()))
    torch.testing.assert_close(fixed(x), conv(x), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("options", [
    {},
    {"win_length": 400, "window": "hamming"},
    {"window": ["kaiser", 8.0]},
    {"pad_mode": "constant", "power": 1.0},
    {"center": False, "n_fft": 401, "hop_length": 100},
])
@pytest.mark.kernel_path
def test_fft_spectrogram_follows_nnaudio_conventions(options: dict) -> None:
    args = {"sample_rate": 16000, "n_fft": 480, "hop_length": 160, "win_length": None, "window": "hann",
            "center": True, "pad_mode": "reflect", "power": 2.0, **options}
    x = waveform(2, 4000)
    fft = PowerSpectrogram(**args, trainable=False)(x)
    conv_module = PowerSpectrogram(**args, trainable=True)
    conv = conv_module(x)
    upstream = conv_module.stft(x, output_format="Complex").square().sum(-1)
    torch.testing.assert_close(conv, upstream.pow(args["power"] / 2), rtol=1e-5, atol=1e-6 * float(conv.detach().max()))
    assert fft.shape == conv.shape
    assert fft.shape[-1] == PowerSpectrogram(**args, trainable=False).num_frames(4000)
    torch.testing.assert_close(fft, conv, rtol=0, atol=1e-5 * float(fft.max()))


@pytest.mark.kernel_path
@pytest.mark.parametrize("setting", ["A", "B", "C", "D"])
def test_silent_frames_match_nnaudio_in_every_setting(setting: str) -> None:
    """A clip zero-padded at its end (as short Speech Commands clips are): nnAudio's
    trainable STFT adds 1e-8 under its magnitude's root, its fixed one nothing, and silent
    frames of the log-Mel (where that 1e-8 dominates) and of the magnitude come out as
    nnAudio's."""
    x = waveform(2)
    x[:, 12000:] = 0
    stft, mel = SETTINGS[setting]
    ours = build_frontend({"name": "nnaudio", "setting": setting})
    upstream = MelSpectrogram(sr=16000, n_fft=480, n_mels=40, hop_length=160, trainable_mel=mel,
                              trainable_STFT=stft, verbose=False)
    expected = torch.log(upstream(x) + 1e-10).detach()
    silent = expected[..., -10:]
    assert float(silent.max() - silent.min()) < 1.0  # only the added terms are left there
    torch.testing.assert_close(ours(x), expected, rtol=1e-4, atol=1e-3)
    magnitude = build_frontend({"name": "fastaudio", "setting": setting}).spectrogram(x).detach()
    upstream_stft = STFT(n_fft=480, hop_length=160, sr=16000, trainable=stft, output_format="Magnitude",
                         verbose=False)
    expected_magnitude = upstream_stft(x).detach()
    torch.testing.assert_close(magnitude[..., -10:], expected_magnitude[..., -10:], rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(magnitude, expected_magnitude, rtol=1e-4, atol=1e-5 * float(expected_magnitude.max()))
    if stft:
        assert float(magnitude[..., -10:].min()) == pytest.approx(1e-4, rel=1e-3)
        unguarded = build_frontend({"name": "fastaudio", "setting": setting, "trainable_stft_eps": 0.0})
        assert float(unguarded.spectrogram(x).detach()[..., -10:].max()) < 1e-6


@pytest.mark.kernel_path
def test_setting_a_matches_upstream_nnaudio_and_torchaudio() -> None:
    fe = NnAudioFrontEnd()
    x = waveform(2)
    ours = fe(x)

    upstream = MelSpectrogram(sr=16000, n_fft=480, n_mels=40, hop_length=160, verbose=False)
    torch.testing.assert_close(ours, torch.log(upstream(x) + 1e-10), rtol=1e-5, atol=1e-4)

    ta = torchaudio.transforms.MelSpectrogram(
        sample_rate=16000, n_fft=480, hop_length=160, n_mels=40, power=2.0, center=True,
        pad_mode="reflect", norm="slaney", mel_scale="slaney",
    )
    # Same Slaney filters up to float rounding; replace them to compare the rest exactly.
    torch.testing.assert_close(ta.mel_scale.fb.T, fe.mel_basis, rtol=0, atol=1e-6)
    ta.mel_scale.fb.copy_(fe.mel_basis.T)
    torch.testing.assert_close(ours, torch.log(ta(x) + 1e-10), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("num_samples", [16000, 15999, 8000, 1234])
def test_num_frames(num_samples: int) -> None:
    for name in FRONTENDS:
        fe = build_frontend({"name": name, "n_fft": 400, "hop_length": 128})
        assert fe(waveform(1, num_samples)).shape[-1] == fe.num_frames(num_samples)
    assert NnAudioFrontEnd().num_frames(16000) == 101


@pytest.mark.parametrize("name", FRONTENDS.names())
@pytest.mark.parametrize("mask_bins", [[10, 20], [[0, 3], [100, 241]]])
def test_masked_bins_do_not_reach_the_output(name: str, mask_bins: list) -> None:
    fe = build_frontend({"name": name, "setting": "C", "mask_bins": mask_bins})
    pairs = mask_bins if isinstance(mask_bins[0], list) else [mask_bins]
    masked = torch.zeros(241, dtype=torch.bool)
    for start, end in pairs:
        masked[start:end] = True

    assert (fe.filterbank().detach()[:, masked] == 0).all()
    spec = fe.spectrogram(waveform(2)).detach()
    louder = spec.clone()
    louder[:, masked] = louder[:, masked] * 100 + 1.0
    torch.testing.assert_close(fe.project(louder), fe.project(spec), rtol=0, atol=0)

    # Masked bins are cut before the projection, so their STFT kernels learn nothing.
    fe(waveform(2)).mean().backward()
    for p in fe.parameter_parts()["stft"]:
        assert (p.grad[masked] == 0).all() and (p.grad[~masked] != 0).any()


def test_random_mel_init() -> None:
    torch.manual_seed(0)
    fe = NnAudioFrontEnd(random_mel_init=True, trainable_mel=True)
    basis = fe.mel_basis.detach()
    slaney = NnAudioFrontEnd().mel_basis
    assert basis.shape == slaney.shape
    assert (basis >= 0).all()
    assert 0.3 < (basis > 0).float().mean() < 0.7  # ReLU of a symmetric distribution
    assert not torch.allclose(basis, slaney)
    assert torch.isfinite(fe(waveform(1))).all()


@pytest.mark.parametrize("clamp", [True, False])
def test_mel_basis_clamped_after_optimizer_step(clamp: bool) -> None:
    fe = NnAudioFrontEnd(trainable_mel=True, clamp_mel=clamp)
    opt = torch.optim.SGD(fe.parameters(), lr=1.0)
    with torch.no_grad():
        fe.mel_basis[:20] = 1.5
        fe.mel_basis[20:] = -0.5
    fe.mel_basis.sum().backward()  # gradient step keeps values out of range
    opt.step()
    fe.after_optimizer_step()
    inside = ((fe.mel_basis >= 0) & (fe.mel_basis <= 1)).all()
    assert bool(inside) == clamp


@pytest.mark.parametrize("clamp", ["forward", "step"])
@pytest.mark.parametrize("param_change_factor", [1.0, 0.5])
def test_fastaudio_filters_stay_in_range(param_change_factor: float, clamp: str) -> None:
    fe = FastAudioFrontEnd(trainable_filterbank=True, min_band_hz=20.0, max_band_hz=1000.0,
                           param_change_factor=param_change_factor, clamp=clamp)
    opt = torch.optim.SGD(fe.parameters(), lr=1e6)
    for direction in (1.0, -1.0):
        for _ in range(3):
            opt.zero_grad()
            (-direction * (fe.centre_hz().sum() + fe.band_hz().sum())).backward()
            opt.step()
            fe.after_optimizer_step()
            centres, bands = fe.applied_centre_hz().detach(), fe.applied_band_hz().detach()
            assert ((centres >= 0) & (centres <= 8000)).all()
            assert ((bands >= 20.0) & (bands <= 1000.0 + 1e-3)).all()
            # "forward" holds the filters in range, not the parameters (as in the study).
            stored_inside = ((fe.centre_hz() >= 0) & (fe.centre_hz() <= 8000)).all()
            assert bool(stored_inside) == (clamp == "step") or direction < 0
        expected = (8000.0, 1000.0) if direction > 0 else (0.0, 20.0)
        torch.testing.assert_close(centres, torch.full_like(centres, expected[0]), rtol=1e-5, atol=1e-2)
        torch.testing.assert_close(bands, torch.full_like(bands, expected[1]), rtol=1e-5, atol=1e-2)

    # A loss on the output, with a step size far too large, still leaves usable filters.
    fe = FastAudioFrontEnd(trainable_filterbank=True, param_change_factor=param_change_factor, clamp=clamp)
    opt = torch.optim.SGD(fe.parameters(), lr=1e3)
    for _ in range(3):
        opt.zero_grad()
        fe(waveform(2))[:, 20:].mean().backward()
        opt.step()
        fe.after_optimizer_step()
    assert ((fe.applied_centre_hz() >= 0) & (fe.applied_centre_hz() <= 8000)).all()
    assert ((fe.applied_band_hz() >= fe.min_band_hz) & (fe.applied_band_hz() <= fe.max_band_hz + 1e-3)).all()
    assert torch.isfinite(fe(waveform(1))).all()


@pytest.mark.parametrize("trainable", [False, True])
def test_fastaudio_study_clamps_hold_frozen_and_trainable(trainable: bool) -> None:
    """The study's bandwidth range 3.1-603.7 Hz binds the filters applied, also when frozen:
    at 10 filters the upper Mel bands (about 1.6 kHz wide) are applied 603.7 Hz wide."""
    fe = FastAudioFrontEnd(n_mels=10, trainable_filterbank=trainable)
    assert fe.band_hz().max() > 1000.0
    assert fe.applied_band_hz().max().item() == pytest.approx(603.7, rel=1e-6)
    assert fe.applied_band_hz().min().item() >= 3.1
    # The applied triangles: no filter is non-zero wider than 2 x 603.7 Hz of STFT bins.
    bin_hz = 16000 / 480
    widths = (fe.filterbank().detach() > 0).sum(dim=1) * bin_hz
    assert widths.max().item() <= 2 * 603.7 + bin_hz
    if trainable:
        with torch.no_grad():
            fe.fbank.band.fill_(-1.0)
            fe.fbank.f_central.fill_(10.0)
        fe.after_optimizer_step()
        assert (fe.band_hz() < 0).all()  # parameters left alone ...
        assert torch.allclose(fe.applied_band_hz(), torch.full((10,), 3.1))  # ... filters held in range
        assert torch.allclose(fe.applied_centre_hz(), torch.full((10,), 8000.0))
        assert torch.isfinite(fe(waveform(1))).all()


def test_fastaudio_db_floor_hangs_from_the_batch_maximum() -> None:
    loud, quiet = waveform(1), 1e-9 * waveform(1)
    batch = FastAudioFrontEnd()(torch.cat([loud, quiet]))
    per_clip = FastAudioFrontEnd(top_db_over="clip")(torch.cat([loud, quiet]))
    assert batch.min().item() == pytest.approx(batch.max().item() - 80.0, abs=1e-3)
    assert per_clip[1].max() - per_clip[1].min() <= 80.0 + 1e-3
    assert per_clip[1].min() < batch[1].min()  # the quiet clip is floored by the loud one


def test_fastaudio_starts_on_the_mel_scale() -> None:
    for pcf in (1.0, 0.3):
        fe = FastAudioFrontEnd(trainable_filterbank=True, param_change_factor=pcf)
        frozen = FastAudioFrontEnd()
        torch.testing.assert_close(fe.centre_hz().detach(), frozen.centre_hz(), rtol=1e-5, atol=1e-3)
        torch.testing.assert_close(fe.band_hz().detach(), frozen.band_hz(), rtol=1e-5, atol=1e-3)
    mel = 2595 * math.log10(1 + frozen.centre_hz()[-1].item() / 700)
    assert mel == pytest.approx(2595 * math.log10(1 + 8000 / 700) * 40 / 41, rel=1e-4)


def test_fastaudio_sort_centres() -> None:
    unsorted = FastAudioFrontEnd(trainable_filterbank=True)
    ordered = FastAudioFrontEnd(trainable_filterbank=True, sort_centres=True)
    for fe in (unsorted, ordered):
        with torch.no_grad():
            fe.fbank.f_central[[3, 30]] = fe.fbank.f_central[[30, 3]]
    x = waveform(1)
    order = torch.argsort(unsorted.centre_hz().detach())
    torch.testing.assert_close(ordered(x), unsorted(x)[:, order])
    peaks = ordered.filterbank().detach().argmax(dim=1)
    assert (peaks.diff() >= 0).all()


@pytest.mark.parametrize("sort_centres", [False, True])
def test_fastaudio_frozen_filters_are_built_once(sort_centres: bool) -> None:
    """A frozen filterbank's triangles are kept (and moved) as a buffer, equal to building
    them again, outside the state dict; SpeechBrain's random perturbation still draws anew."""
    fe = FastAudioFrontEnd(sort_centres=sort_centres, mask_bins=[5, 9]).double()
    assert fe.filterbank().dtype == torch.float64
    torch.testing.assert_close(fe.filterbank(), fe._build_matrix(False))
    assert fe.filterbank() is fe.frozen_matrix
    assert "frozen_matrix" not in fe.state_dict()
    reference = FastAudioFrontEnd(sort_centres=sort_centres, mask_bins=[5, 9]).double()
    reference.load_state_dict(fe.state_dict())
    x = waveform(2).double()
    torch.testing.assert_close(fe(x), reference(x))
    perturbed = FastAudioFrontEnd(param_rand_factor=0.2).train()
    assert not torch.equal(perturbed._matrix(perturb=True), perturbed._matrix(perturb=True))
    assert torch.equal(perturbed.eval()(x.float()), perturbed(x.float()))
    trainable = FastAudioFrontEnd(trainable_filterbank=True)
    assert not hasattr(trainable, "frozen_matrix") and trainable.filterbank().requires_grad


@pytest.mark.parametrize("name", FRONTENDS.names())
def test_moves_with_its_buffers(name: str) -> None:
    """``.double()`` goes through the same path as ``.to(device)``."""
    fe = build_frontend({"name": name, "setting": "B", "mask_bins": [5, 9]}).double()
    out = fe(waveform(1).double())
    assert out.dtype == torch.float64 and torch.isfinite(out).all()


@pytest.mark.parametrize("config,field,allowed", [
    ({"name": "nnaudio", "n_mels": 0}, "n_mels", r"\[1, 241\]"),
    ({"name": "fastaudio", "n_mels": 300}, "n_mels", r"\[1, 241\]"),
    ({"name": "nnaudio", "n_fft": 256, "n_mels": 200}, "n_mels", r"\[1, 129\]"),
    ({"name": "nnaudio", "mask_bins": [10, 10]}, "mask_bins", r"0 <= start < end <= 241"),
    ({"name": "nnaudio", "mask_bins": [[0, 5], [200, 242]]}, "mask_bins", r"<= 241"),
    ({"name": "fastaudio", "mask_bins": [-1, 3]}, "mask_bins", r"0 <= start"),
    ({"name": "nnaudio", "mask_bins": "low"}, "mask_bins", r"pair"),
    ({"name": "nnaudio", "n_filters": 40}, "n_filters", r"allowed: .*n_mels"),
    ({"name": "fastaudio", "trainable_mel": True}, "trainable_mel", r"allowed: .*trainable_filterbank"),
    ({"name": "nnaudio", "setting": "E"}, "setting", r"A, B, C, D"),
    ({"name": "mfcc"}, "name", r"fastaudio, nnaudio"),
    ({"name": "nnaudio", "fmax": 9000}, "fmax", r"8000"),
    ({"name": "nnaudio", "pad_mode": "circular"}, "pad_mode", r"reflect, constant"),
    ({"name": "nnaudio", "hop_length": 0}, "hop_length", r">= 1"),
    ({"name": "fastaudio", "window": "triangle-ish"}, "window", r"scipy.signal.get_window"),
    ({"name": "fastaudio", "min_band_hz": 50.0, "max_band_hz": 10.0}, "max_band_hz", r"> min_band_hz"),
    ({"name": "fastaudio", "param_rand_factor": 1.5}, "param_rand_factor", r"\[0, 1\)"),
])
def test_bad_configs_name_the_field(config: dict, field: str, allowed: str) -> None:
    with pytest.raises(ValueError, match=rf"(?m)^{field}: .*{allowed}"):
        validate_frontend_config(config)
    with pytest.raises(ValueError, match=rf"(?m)^{field}: "):
        build_frontend(config)


@pytest.mark.parametrize("name", FRONTENDS.names())
def test_state_dict_round_trip(name: str) -> None:
    fe = build_frontend({"name": name, "setting": "D", "mask_bins": [0, 2]})
    opt = torch.optim.Adam(fe.parameters(), lr=1e-2)
    fe(waveform(1)).mean().backward()
    opt.step()
    fe.after_optimizer_step()
    restored = build_frontend({"name": name, "setting": "D", "mask_bins": [0, 2]})
    restored.load_state_dict(fe.state_dict())
    x = waveform(1, seed=3)
    torch.testing.assert_close(restored(x), fe(x), rtol=0, atol=0)


def test_every_problem_is_reported() -> None:
    with pytest.raises(ValueError) as err:
        validate_frontend_config({"name": "nnaudio", "n_mels": 0, "mask_bins": [3, 1], "colour": 1})
    assert [line.split(":")[0] for line in str(err.value).splitlines()] == ["colour", "n_mels", "mask_bins"]


def test_param_names() -> None:
    assert {"n_mels", "trainable_stft", "trainable_mel", "mask_bins", "random_mel_init"} <= frontend_param_names(
        "nnaudio")
    assert {"n_mels", "f_min", "f_max", "trainable_filterbank", "sort_centres"} <= frontend_param_names("fastaudio")
    for name in FRONTENDS:
        validate_frontend_config({"name": name, "setting": "D", "mask_bins": None, "n_mels": 241})


@pytest.mark.parametrize("name,setting", [("nnaudio", "D"), ("fastaudio", "B"), ("nnaudio", "A")])
def test_plot(name: str, setting: str, tmp_path) -> None:
    fe = build_frontend({"name": name, "setting": setting, "n_mels": 16})
    initial = snapshot_frontend(fe)
    assert set(initial) == ({"filterbank", "stft_kernels"} if SETTINGS[setting][0] else {"filterbank"})
    if fe.trainable_parameter_counts()["filterbank"]:
        opt = torch.optim.Adam(fe.parameters(), lr=1e-2)
        fe(waveform(1)).mean().backward()
        opt.step()
        fe.after_optimizer_step()
    fig = plot_frontend(fe, initial=initial, path=tmp_path / "frontend.png")
    assert len(fig.axes) == (5 if SETTINGS[setting][0] else 1)
    assert (tmp_path / "frontend.png").stat().st_size > 10_000
