"""A small name -> builder registry, so that sweep configs select components by name."""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, TypeVar

T = TypeVar("T", bound=Callable[..., Any])


class Registry:
    """Maps names used in sweep specs to the callables that build them.

    Examples
    --------
    >>> ACTIVATIONS = Registry("activation")
    >>> @ACTIVATIONS.register("double")
    ... def double(x=1):
    ...     return 2 * x
    >>> ACTIVATIONS.build("double", x=3)
    6
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._builders: Dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(builder: T) -> T:
            if name in self._builders:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._builders[name] = builder
            return builder

        return decorator

    def get(self, name: str) -> Callable[..., Any]:
        try:
            return self._builders[name]
        except KeyError:
            raise KeyError(
                f"unknown {self.kind} {name!r}; registered: {', '.join(sorted(self._builders))}"
            ) from None

    def check(self, name: str) -> str:
        """``name`` if it is registered, else a ValueError naming the registered names (a
        pydantic validator for spec fields that select a component).

        Examples
        --------
        >>> SHAPES = Registry("shape")
        >>> _ = SHAPES.register("square")(lambda: 4)
        >>> SHAPES.check("square")
        'square'
        >>> SHAPES.check("circle")
        Traceback (most recent call last):
        ...
        ValueError: unknown shape 'circle'; allowed: square
        """
        if name not in self._builders:
            raise ValueError(f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}")
        return name

    def build(self, name: str, **kwargs: Any) -> Any:
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._builders)

    def __contains__(self, name: object) -> bool:
        return name in self._builders

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
