"""Name -> component registries, so that sweep specs select components by name.

Every component registers one way: ``@REGISTRY.register("name", **description)`` on its
definition (a class or a builder function), with what the rest of specsweep needs to know
about it, without building it, given as keyword arguments beside it. A registry declares the
type of those descriptions; a description key the type does not have, one it needs and
lacks, or a name registered twice fails at import, naming the component.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, Dict, Generic, Iterator, Tuple, TypeVar

T = TypeVar("T", bound=Callable[..., Any])
D = TypeVar("D")


class RegistrationError(ValueError):
    """A component registered with a description its registry does not take, or under a
    name registered already."""


@dataclasses.dataclass(frozen=True)
class NoDescription:
    """The description of a component whose definition says all there is (a front-end's or
    a backbone's constructor arguments are its contract)."""


class Registry(Generic[D]):
    """Maps names used in sweep specs to the definitions that build them and their typed
    descriptions.

    Parameters
    ----------
    kind : str
        What is registered, in messages (``"dataset"``: "unknown dataset 'x'").
    about : type, optional
        The type of the descriptions, called with the keyword arguments of a registration
        (a dataclass or a pydantic model). When it has a ``name`` argument, the registry
        gives it the registered name. By default components take no description.

    Examples
    --------
    >>> @dataclasses.dataclass(frozen=True)
    ... class Shape:
    ...     corners: int
    ...     regular: bool = True
    >>> SHAPES = Registry("shape", about=Shape)
    >>> @SHAPES.register("square", corners=4)
    ... def square(side=1.0):
    ...     return side * side
    >>> SHAPES.build("square", side=3.0), SHAPES.about("square")
    (9.0, Shape(corners=4, regular=True))
    >>> SHAPES.check("circle")
    Traceback (most recent call last):
    ...
    ValueError: unknown shape 'circle'; allowed: square
    >>> SHAPES.register("kite", corners=4, sides=4)(lambda: 1)
    Traceback (most recent call last):
    ...
    specsweep.registry.RegistrationError: shape 'kite': unknown description key 'sides'; allowed: corners, regular
    """

    def __init__(self, kind: str, about: Callable[..., D] = NoDescription) -> None:  # type: ignore[assignment]
        self.kind = kind
        self.about_type = about
        self._entries: Dict[str, Tuple[Callable[..., Any], D]] = {}
        params = inspect.signature(about).parameters
        self._named = "name" in params
        self._keys = {key: param for key, param in params.items() if key != "name"}

    def register(self, name: str, /, **description: Any) -> Callable[[T], T]:
        """A decorator registering its class or builder function as ``name``, described by
        ``description`` (the keyword arguments of the registry's ``about`` type).

        Raises
        ------
        RegistrationError
            For a description key the type does not take, a required one left out, a value
            the type refuses, or a ``name`` registered already.
        """
        about = self._describe(name, description)

        def decorator(definition: T) -> T:
            if name in self._entries:
                raise RegistrationError(f"{self.kind} {name!r} is registered twice: by "
                                        f"{_qualname(self._entries[name][0])} and by {_qualname(definition)}")
            self._entries[name] = (definition, about)
            return definition

        return decorator

    def _describe(self, name: str, description: Dict[str, Any]) -> D:
        unknown = sorted(set(description) - set(self._keys))
        if unknown:
            allowed = ", ".join(self._keys) or "none"
            raise RegistrationError(f"{self.kind} {name!r}: unknown description key{'s' * (len(unknown) > 1)} "
                                    f"{', '.join(map(repr, unknown))}; allowed: {allowed}")
        missing = [key for key, param in self._keys.items()
                   if param.default is inspect.Parameter.empty and key not in description]
        if missing:
            raise RegistrationError(f"{self.kind} {name!r}: description key{'s' * (len(missing) > 1)} "
                                    f"{', '.join(map(repr, missing))} missing")
        try:
            return self.about_type(**description, **({"name": name} if self._named else {}))
        except (TypeError, ValueError) as error:
            # A pydantic model's own checks of the values (a dataclass makes none).
            raise RegistrationError(f"{self.kind} {name!r}: {error}") from error

    def get(self, name: str) -> Callable[..., Any]:
        """The class or builder function registered as ``name``; KeyError naming the registered ones."""
        return self._entry(name)[0]

    def about(self, name: str) -> D:
        """The description of the component registered as ``name``, of the registry's ``about`` type."""
        return self._entry(name)[1]

    def _entry(self, name: str) -> Tuple[Callable[..., Any], D]:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}") from None

    def check(self, name: str) -> str:
        """``name`` if it is registered, else a ValueError naming the registered names (a
        pydantic validator for spec fields that select a component)."""
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}")
        return name

    def build(self, name: str, **kwargs: Any) -> Any:
        """What the definition registered as ``name`` returns for ``kwargs``."""
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def _qualname(definition: Any) -> str:
    return f"{getattr(definition, '__module__', '?')}.{getattr(definition, '__qualname__', repr(definition))}"
