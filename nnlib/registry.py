"""One registry class used for losses, optimizers, metrics, activations and initializers."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = ["Registry"]

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class Registry:
    """Maps lower-case names to classes or functions.

    Parameters
    ----------
    kind : str
        What is registered, for error messages ("loss", "optimizer", ...).
    base : type, optional
        If given, instances of this type pass through :meth:`get` unchanged and
        registered classes must subclass it.

    Examples
    --------
    >>> losses = Registry("loss")
    >>> @losses.register("my_loss")
    ... class MyLoss: ...
    >>> losses.get("my_loss")  # doctest: +ELLIPSIS
    <...MyLoss object at ...>
    """

    def __init__(self, kind: str, base: type | None = None) -> None:
        self.kind = kind
        self.base = base
        self._entries: dict[str, Any] = {}
        self._canonical: dict[str, str] = {}

    def register(self, name: str, *aliases: str) -> Callable[[Any], Any]:
        """Class or function decorator adding an entry under ``name`` and ``aliases``.

        The object gets a ``registered_name`` attribute (its canonical name), which
        ``get_config`` and model files use.
        """
        for n in (name, *aliases):
            if not isinstance(n, str) or not _NAME.match(n):
                raise ValueError(
                    f"{self.kind} names must be lower-case letters, digits and '_', got {n!r}"
                )

        def decorator(obj: Any) -> Any:
            if self.base is not None and isinstance(obj, type) and not issubclass(obj, self.base):
                raise TypeError(f"{obj.__name__} must subclass {self.base.__name__} to be a {self.kind}")
            for n in (name, *aliases):
                self._entries[n] = obj
                self._canonical[n] = name
            try:
                obj.registered_name = name
            except (AttributeError, TypeError):  # builtins cannot take attributes
                pass
            return obj

        return decorator

    def names(self) -> list[str]:
        """All registered names, aliases included, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def lookup(self, name: str) -> Any:
        """The class or function registered under ``name`` (no instantiation)."""
        if not isinstance(name, str):
            raise TypeError(f"{self.kind} name must be a str, got {type(name).__name__}")
        key = name.lower()
        if key not in self._entries:
            raise ValueError(
                f"unknown {self.kind} {name!r}; valid names are: {', '.join(self.names())}"
            )
        return self._entries[key]

    def canonical(self, name: str) -> str:
        """The canonical name of a registered name or alias."""
        self.lookup(name)
        return self._canonical[name.lower()]

    def get(self, identifier: Any, **kwargs: Any) -> Any:
        """Resolve ``identifier`` to an object.

        Parameters
        ----------
        identifier : str, class, instance or dict
            A registered name (case-insensitive), a class (instantiated with
            ``kwargs``), an instance of ``base`` (returned as is), or a
            ``{"name": ..., "config": {...}}`` dict as written by ``get_config``.
        **kwargs
            Constructor arguments when ``identifier`` names a class.

        Raises
        ------
        ValueError
            For an unknown name, listing the valid ones.
        TypeError
            For an identifier of any other type.
        """
        if isinstance(identifier, str):
            obj = self.lookup(identifier)
            return obj(**kwargs) if isinstance(obj, type) else obj
        if isinstance(identifier, dict):
            if "name" not in identifier:
                raise ValueError(f"{self.kind} dict needs a 'name' key, got keys {sorted(identifier)}")
            config = dict(identifier.get("config") or {})
            config.update(kwargs)
            obj = self.lookup(identifier["name"])
            return obj(**config) if isinstance(obj, type) else obj
        if isinstance(identifier, type):
            if self.base is not None and not issubclass(identifier, self.base):
                raise TypeError(f"{identifier.__name__} is not a {self.kind} class")
            return identifier(**kwargs)
        if self.base is not None and isinstance(identifier, self.base):
            return identifier
        if self.base is None and callable(identifier):
            return identifier
        raise TypeError(
            f"{self.kind} must be a name, class, instance or config dict, got {identifier!r}"
        )
