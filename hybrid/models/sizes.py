"""The one check every network's constructor makes of its sizes."""

from __future__ import annotations


def require_positive(owner: str, **sizes: int) -> None:
    """Raise one ``ValueError`` naming ``owner`` and the first of ``sizes`` below 1."""
    for name, value in sizes.items():
        if value < 1:
            raise ValueError(f"{owner} {name} must be positive, got {value}")
