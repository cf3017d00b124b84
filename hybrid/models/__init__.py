"""Correction networks with the ``forward(t, y)`` contract."""
