"""The checks every network's constructor makes of its sizes and options."""

from __future__ import annotations


def require_positive(owner: str, **sizes: int) -> None:
    """Raise one ``ValueError`` naming ``owner`` and the first of ``sizes`` below 1."""
    for name, value in sizes.items():
        if value < 1:
            raise ValueError(f"{owner} {name} must be positive, got {value}")


def require_choice(owner: str, name: str, value: str, options: tuple[str, ...]) -> None:
    """Raise one ``ValueError`` naming ``owner`` if ``value`` is not one of ``options``."""
    if value not in options:
        raise ValueError(f"{owner} {name} must be one of {options}, got {value!r}")
