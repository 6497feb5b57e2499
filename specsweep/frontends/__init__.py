"""Spectrogram front-ends, selected by name in sweep configs.

Examples
--------
>>> fe = build_frontend({"name": "nnaudio", "setting": "C", "n_mels": 40})
>>> fe.trainable_parameter_counts()
{'stft': 231360, 'filterbank': 0}
>>> validate_frontend_config({"name": "fastaudio", "n_mels": 0})
Traceback (most recent call last):
...
ValueError: n_mels: must be an int in [1, 241] (n_fft // 2 + 1), got 0
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

from specsweep.contract import Footprint
from specsweep.frontends.base import (
    FRONTENDS,
    SETTINGS,
    FrontEnd,
    constructor_parameters,
    raise_problems,
    setting_flags,
    setting_name,
)
from specsweep.frontends.fastaudio import FastAudioFrontEnd
from specsweep.frontends.nnaudio import NnAudioFrontEnd

__all__ = [
    "FRONTENDS",
    "SETTINGS",
    "FastAudioFrontEnd",
    "FrontEnd",
    "NnAudioFrontEnd",
    "build_frontend",
    "frontend_footprint",
    "frontend_param_names",
    "frontend_setting",
    "setting_flags",
    "setting_name",
    "validate_frontend_config",
]

# Keys of a front-end config that are not constructor arguments.
CONFIG_KEYS = ("name", "setting")


def frontend_param_names(name: str) -> set[str]:
    """Constructor argument names of the front-end registered as ``name``.

    Examples
    --------
    >>> sorted(frontend_param_names("fastaudio"))[:3]
    ['amin', 'center', 'clamp']
    """
    return set(constructor_parameters(FRONTENDS.get(name)))


def frontend_setting(config: Mapping[str, Any]) -> str:
    """The setting letter A-D of a front-end config: its ``setting`` when given, otherwise
    the letter of its two trainability flags.

    A flag the config leaves out takes the front-end constructor's own default, so a
    config and the front-end built from it always agree (``build_frontend(config).setting``).
    Agreement between a given ``setting`` and explicit flags is checked by
    :func:`validate_frontend_config`, not here.

    Parameters
    ----------
    config : mapping
        ``{"name": ..., "setting": "A"-"D" (optional), "trainable_stft": bool (optional),
        <filterbank flag>: bool (optional), ...}``; the filterbank flag is the front-end
        class's ``filterbank_flag`` (nnaudio: ``trainable_mel``, fastaudio:
        ``trainable_filterbank``).

    Returns
    -------
    str
        One of :data:`SETTINGS`.

    Raises
    ------
    ValueError
        For a missing or unknown ``name`` or a ``setting`` outside A-D.

    Examples
    --------
    >>> frontend_setting({"name": "nnaudio", "setting": "C"})
    'C'
    >>> frontend_setting({"name": "nnaudio", "trainable_mel": True})
    'B'
    >>> frontend_setting({"name": "fastaudio", "trainable_stft": True, "trainable_filterbank": True})
    'D'
    >>> frontend_setting({"name": "fastaudio"})
    'A'
    """
    cls = _frontend_class(config)
    if config.get("setting") is not None:
        setting_flags(config["setting"])
        return config["setting"]
    params = constructor_parameters(cls)
    stft, filterbank = (config.get(flag, params[flag].default) for flag in ("trainable_stft", cls.filterbank_flag))
    return setting_name(stft, filterbank)


def frontend_argument(config: Mapping[str, Any], name: str) -> Any:
    """The value of constructor argument ``name`` that the front-end built from ``config``
    gets: the config's, or the constructor's default.

    Examples
    --------
    >>> frontend_argument({"name": "nnaudio"}, "n_mels"), frontend_argument({"name": "nnaudio", "n_mels": 20}, "n_mels")
    (40, 20)
    """
    if name in config:
        return config[name]
    return constructor_parameters(_frontend_class(config))[name].default


def validate_frontend_config(config: Mapping[str, Any], num_samples: Optional[int] = None,
                             data_rate: Optional[int] = None) -> None:
    """Raise ValueError with one line per problem of a front-end config, each line starting
    with the offending field and saying what is allowed.

    Checks the name, unknown keys, the setting and its agreement with explicit flags,
    and every argument's range (e.g. ``n_mels`` in ``[1, n_fft // 2 + 1]``, ``mask_bins``
    pairs with ``0 <= start < end <= n_fft // 2 + 1``).

    Parameters
    ----------
    config : mapping
        ``{"name": ..., "setting": "A"-"D" (optional), **constructor arguments}``.
    num_samples : int, optional
        Clip length of the dataset, which bounds the STFT window.
    data_rate : int, optional
        Sampling rate of the dataset, which ``sample_rate`` must equal.

    Examples
    --------
    >>> validate_frontend_config({"name": "nnaudio", "setting": "B", "mask_bins": [[0, 4]]})
    >>> validate_frontend_config({"name": "nnaudio", "n_fft": 65536}, num_samples=16000)
    Traceback (most recent call last):
    ...
    ValueError: n_fft: must be at most the clip length, 16000 samples, got 65536
    >>> validate_frontend_config({"name": "nnaudio", "mask_bins": [5, 3], "colour": 1})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: colour: unknown key for frontend 'nnaudio'; allowed: center, clamp_mel, eps, ...
    mask_bins: [5, 3) must satisfy 0 <= start < end <= 241 (n_fft // 2 + 1)
    """
    _check_config(config, num_samples, data_rate)


def frontend_footprint(config: Mapping[str, Any], num_samples: int) -> Footprint:
    """Sizes of the front-end of a valid ``config`` at clips of ``num_samples`` samples,
    computed without building it (see :meth:`~specsweep.frontends.stft.StftFrontEnd.footprint`)."""
    args = _check_config(config, num_samples)
    return FRONTENDS.get(config["name"]).footprint(num_samples, **args)


def build_frontend(config: Mapping[str, Any]) -> FrontEnd:
    """Build a front-end from a config such as ``{"name": "nnaudio", "setting": "B"}``.

    ``setting`` (A-D) is another spelling of the two trainability flags (nnaudio:
    ``trainable_stft``/``trainable_mel``; fastaudio: ``trainable_stft``/
    ``trainable_filterbank``); giving a flag that contradicts the setting is an error.

    Parameters
    ----------
    config : mapping
        ``name``, optional ``setting``, and constructor arguments.

    Returns
    -------
    FrontEnd
        Maps ``(batch, samples)`` waveforms to ``(batch, n_mels, frames)``.

    Examples
    --------
    >>> fe = build_frontend({"name": "fastaudio", "setting": "B", "n_mels": 20})
    >>> fe.trainable_filterbank, fe.output_shape(16000)
    (True, (20, 101))
    >>> build_frontend({"name": "nnaudio", "setting": "A", "trainable_mel": True})
    Traceback (most recent call last):
    ...
    ValueError: trainable_mel: setting 'A' means trainable_mel=False, but the config also gives trainable_mel=True
    """
    args = _check_config(config)
    return FRONTENDS.build(config["name"], **args)


def _check_config(config: Mapping[str, Any], num_samples: Optional[int] = None,
                  data_rate: Optional[int] = None) -> Dict[str, Any]:
    """Validate ``config`` and return the constructor arguments it stands for."""
    cls = _frontend_class(config)
    name = config["name"]
    allowed = frontend_param_names(name)
    problems: List[str] = [
        f"{key}: unknown key for frontend {name!r}; allowed: {', '.join(sorted(allowed | set(CONFIG_KEYS)))}"
        for key in sorted(set(config) - allowed - set(CONFIG_KEYS))
    ]
    args = {k: v for k, v in config.items() if k in allowed}
    # None reads as "no setting", as in configs that spell the flags out instead.
    if config.get("setting") is not None:
        setting = config["setting"]
        if not isinstance(setting, str) or setting not in SETTINGS:
            problems.append(f"setting: must be one of {', '.join(SETTINGS)}, got {setting!r}")
        else:
            for flag, value in zip(("trainable_stft", cls.filterbank_flag), setting_flags(setting)):
                if flag in args and args[flag] != value:
                    problems.append(f"{flag}: setting {setting!r} means {flag}={value}, "
                                    f"but the config also gives {flag}={args[flag]!r}")
                args[flag] = value
    problems += cls.config_problems(**args)
    if num_samples is not None and not problems:
        problems += cls.input_problems(num_samples, data_rate, **args)
    raise_problems(problems)
    return args


def _frontend_class(config: Mapping[str, Any]) -> type:
    """The registered front-end class named by ``config["name"]``; ValueError naming ``name`` otherwise."""
    name = config.get("name")
    if name is None:
        raise ValueError(f"name: missing; allowed: {', '.join(FRONTENDS.names())}")
    if not isinstance(name, str) or name not in FRONTENDS:
        raise ValueError(f"name: unknown frontend {name!r}; allowed: {', '.join(FRONTENDS.names())}")
    return FRONTENDS.get(name)
