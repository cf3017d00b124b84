"""Finite-volume geometry of a 2-D grid: a box in metres or a regular lat-lon grid on the sphere.

Every field lives at cell centres with the grid on its last two axes ``[..., ny, nx]``
(axis -2 is ``y``/latitude, axis -1 is ``x``/longitude). A ``Grid`` stores, as buffers, what the
flux-form operators in :mod:`hybrid.physics.operators` need:

* ``area`` ``[ny, nx]``: cell areas (m²);
* ``dx_east`` / ``dy_north`` ``[ny, nx]``: signed distance from a centre to the next centre along
  +index (m); ``dy_north`` is negative when latitude (or ``y``) descends;
* ``len_east`` / ``len_north`` ``[ny, nx]``: lengths of the faces between those centres (m), signed
  like the spacing so that a flux ``v * len_north`` points along +index;
* ``open_east`` / ``open_north`` ``[ny, nx]``: 1 where the face is open, 0 where it is a wall
  (domain edge of a non-periodic axis, or a face touching an inactive cell: no-flux);
* ``active`` ``[ny, nx]``: 1 on active cells, 0 on inactive ones (land, missing values).

The face east of cell ``(j, i)`` joins it to ``(j, i+1)`` (wrapping round on the last column), so
the operators are written once with ``torch.roll`` and walls are just closed faces.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor, nn

EARTH_RADIUS = 6.371e6  # m, mean radius (WGS84 authalic ≈ 6371.007 km)


def _coordinate(values: ArrayLike, name: str, *, unwrap_degrees: bool = False) -> np.ndarray:
    """Return a 1-D float64 coordinate, checked to be strictly monotonic and evenly spaced."""
    c = np.asarray(values, dtype=np.float64)
    if c.ndim != 1 or c.size < 2:
        raise ValueError(f"{name} must be a 1-D array of at least 2 values, got shape {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError(f"{name} contains non-finite values")
    if unwrap_degrees:  # a longitude crossing the dateline, e.g. 170..180,-180..-170
        c = np.rad2deg(np.unwrap(np.deg2rad(c)))
    d = np.diff(c)
    if not (np.all(d > 0) or np.all(d < 0)):
        raise ValueError(f"{name} must be strictly monotonic, got steps {d[:5]}...")
    if np.ptp(d) > 1e-4 * np.abs(d).max():  # float32 coordinates round at ~1e-5 of a step
        raise ValueError(f"{name} must be evenly spaced, got steps from {d.min()} to {d.max()}")
    return c


def _step(c: np.ndarray) -> float:
    """The mean spacing of an evenly spaced coordinate (exact for float32-rounded values)."""
    return float(c[-1] - c[0]) / (c.size - 1)


def _active_mask(active: ArrayLike | None, shape: tuple[int, int]) -> np.ndarray:
    if active is None:
        return np.ones(shape, dtype=bool)
    a = np.asarray(active)
    if a.shape != shape:
        raise ValueError(f"mask `active` must have the grid shape {shape} (ny, nx), got {a.shape}")
    if a.dtype != bool:
        raise ValueError(f"mask `active` must be boolean (True on active cells), got {a.dtype}")
    if not a.any():
        raise ValueError("mask `active` has no active cell")
    return a


def _open_faces(active: np.ndarray, axis: int, periodic: bool) -> np.ndarray:
    """1 where the face between a cell and its +index neighbour along ``axis`` is open."""
    open_ = active & np.roll(active, -1, axis=axis)
    if not periodic:  # the face from the last cell back to the first is a wall
        index = [slice(None)] * 2
        index[axis] = -1
        open_[tuple(index)] = False
    return open_


# The geometry every factory gives; ``Grid.__init__`` derives the other buffers from it.
GEOMETRY = ("area", "dx_east", "dy_north", "len_east", "len_north", "y_north", "sin_lat", "tan_lat")


class Grid(nn.Module):
    """Geometry buffers of a 2-D finite-volume grid; build it with :meth:`box` or :meth:`latlon`.

    Attributes (besides the buffers listed in the module docstring):
        periodic: ``(periodic_y, periodic_x)``.
        kind: ``"box"`` or ``"latlon"``.
        shape: ``(ny, nx)``.
        radius: sphere radius (m) of a lat-lon grid, ``inf`` on a box (no metric terms).
    Buffers ``y_north`` (northward distance from the grid's mid-row, m) and ``sin_lat``/``tan_lat``
    (zero on a box) serve the Coriolis and metric terms.
    """

    radius: float = math.inf

    def __init__(self, geometry: dict[str, np.ndarray], *, periodic: tuple[bool, bool], kind: str):
        super().__init__()
        self.periodic, self.kind, self._min_spacing = periodic, kind, None
        active = geometry.pop("active")
        self.shape = tuple(active.shape)
        dtype = torch.get_default_dtype()
        buffers = {
            **geometry,
            "active": active,
            "open_east": _open_faces(active, 1, periodic[1]),
            "open_north": _open_faces(active, 0, periodic[0]),
        }
        for name, value in buffers.items():
            self.register_buffer(name, torch.tensor(np.array(value, np.float64), dtype=dtype))
        # Weights of the Laplacian (flux-form: open * face length / centre distance) and 1/area,
        # zero at inactive cells so that their tendency is zero.
        self.register_buffer("w_east", self.open_east * self.len_east / self.dx_east)
        self.register_buffer("w_north", self.open_north * self.len_north / self.dy_north)
        self.register_buffer("inv_area", self.active / self.area)
        self.register_buffer("len_open_east", self.len_east * self.open_east)  # uniform flows
        self.register_buffer("len_open_north", self.len_north * self.open_north)

    @classmethod
    def box(
        cls,
        x: ArrayLike,
        y: ArrayLike,
        *,
        periodic: tuple[bool, bool] | bool = True,
        active: ArrayLike | None = None,
    ) -> Grid:
        """A rectangle in metres with cell centres at ``x`` (``[nx]``) and ``y`` (``[ny]``).

        Args:
            x, y: evenly spaced, strictly monotonic centre coordinates (m).
            periodic: ``(periodic_y, periodic_x)`` or one bool for both.
            active: boolean ``[ny, nx]``, True on active cells (default: all active).
        """
        xc, yc = _coordinate(x, "x"), _coordinate(y, "y")
        per = (periodic, periodic) if isinstance(periodic, bool) else tuple(periodic)
        ny, nx = yc.size, xc.size
        dx, dy = _step(xc), _step(yc)
        ones = np.ones((ny, nx))
        geometry = {
            "area": ones * abs(dx * dy),
            "dx_east": ones * dx,
            "dy_north": ones * dy,
            "len_east": ones * abs(dy) * np.sign(dx),
            "len_north": ones * abs(dx) * np.sign(dy),
            "y_north": np.broadcast_to((yc - yc.mean())[:, None], (ny, nx)),
            "sin_lat": ones * 0.0,
            "tan_lat": ones * 0.0,
            "active": _active_mask(active, (ny, nx)),
        }
        return cls(geometry, periodic=per, kind="box")

    @classmethod
    def regular_box(
        cls, nx: int, ny: int, dx: float, dy: float | None = None, **kwargs: object
    ) -> Grid:
        """A box of ``ny x nx`` cells of size ``dx x dy`` (m) starting at the origin."""
        dy = dx if dy is None else dy
        if dx <= 0 or dy <= 0:
            raise ValueError(f"dx and dy must be positive, got dx={dx}, dy={dy}")
        if nx < 2 or ny < 2:
            raise ValueError(f"nx and ny must be at least 2, got nx={nx}, ny={ny}")
        return cls.box(np.arange(nx) * dx, np.arange(ny) * dy, **kwargs)

    @classmethod
    def latlon(
        cls,
        lat: ArrayLike,
        lon: ArrayLike,
        *,
        active: ArrayLike | None = None,
        radius: float = EARTH_RADIUS,
    ) -> Grid:
        """A regular latitude-longitude grid on a sphere of ``radius`` (m).

        Latitude may ascend or descend; longitude ascends (0..360, -180..180, or across the
        dateline). The grid is periodic in longitude when the longitudes close the circle.
        Cells centred on a pole are degenerate (zero zonal width): they are made inactive, with a
        warning. Cell areas are exact spherical bands ``R² Δλ |sin φ_{j+½} - sin φ_{j-½}|``.

        Args:
            lat: ``[ny]`` cell-centre latitudes in degrees.
            lon: ``[nx]`` cell-centre longitudes in degrees.
            active: boolean ``[ny, nx]``, True on active cells.
            radius: sphere radius in metres.
        """
        if radius <= 0:
            raise ValueError(f"radius must be positive, got {radius}")
        latc, lonc = _coordinate(lat, "lat"), _coordinate(lon, "lon", unwrap_degrees=True)
        if np.abs(latc).max() > 90:
            raise ValueError(f"lat must lie in [-90, 90], got {latc.min()}..{latc.max()}")
        if lonc[1] < lonc[0]:
            raise ValueError("lon must ascend (east-ward); reverse it before building the grid")
        dlam, dphi = np.deg2rad(_step(lonc)), np.deg2rad(_step(latc))
        periodic_x = bool(abs(lonc.size * dlam - 2 * math.pi) < 1e-6 * 2 * math.pi)
        if lonc.size * dlam > 2 * math.pi * (1 + 1e-6):
            raise ValueError(f"lon spans more than 360 degrees ({lonc.size} x {np.rad2deg(dlam)})")
        phi = np.deg2rad(latc)
        pole = np.isclose(np.abs(latc), 90.0)
        if pole.any():
            warnings.warn("cells centred on a pole are made inactive", stacklevel=2)
        phi_face = np.clip(phi + dphi / 2, -math.pi / 2, math.pi / 2)  # face at +index side
        phi_back = np.clip(phi - dphi / 2, -math.pi / 2, math.pi / 2)
        ny, nx = phi.size, lonc.size
        ones = np.ones((ny, nx))
        cos = np.where(pole, 1.0, np.cos(phi))  # pole rows are inactive; avoid 0 spacing
        active_ = _active_mask(active, (ny, nx)) & ~pole[:, None]
        geometry = {
            "area": ones * radius**2 * dlam * np.abs(np.sin(phi_face) - np.sin(phi_back))[:, None],
            "dx_east": ones * radius * dlam * cos[:, None],
            "dy_north": ones * radius * dphi,
            "len_east": ones * radius * abs(dphi),
            "len_north": ones * radius * dlam * np.cos(phi_face)[:, None] * np.sign(dphi),
            "y_north": ones * radius * (phi - phi.mean())[:, None],
            "sin_lat": ones * np.sin(phi)[:, None],
            "tan_lat": ones * np.where(pole, 0.0, np.tan(phi))[:, None],
            "active": active_,
        }
        grid = cls(geometry, periodic=(False, periodic_x), kind="latlon")
        grid.radius = float(radius)
        return grid

    def description(self) -> dict:
        """What a checkpoint needs to rebuild this grid before loading its buffers: plain data
        (``kind``, ``shape``, ``periodic``, ``radius``), no tensors."""
        return {
            "kind": self.kind,
            "shape": list(self.shape),
            "periodic": list(self.periodic),
            "radius": None if math.isinf(self.radius) else self.radius,
        }

    @classmethod
    def from_description(cls, description: dict) -> Grid:
        """A grid of the described shape and kind whose geometry is a placeholder (unit cells,
        all active) until ``load_state_dict`` brings the real buffers from a checkpoint."""
        shape = tuple(description["shape"])
        geometry = {name: np.ones(shape) for name in GEOMETRY}
        geometry["active"] = np.ones(shape, bool)
        grid = cls(geometry, periodic=tuple(description["periodic"]), kind=description["kind"])
        if description.get("radius") is not None:
            grid.radius = float(description["radius"])
        return grid

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self._min_spacing = None  # the geometry may change: forget the cached spacing
        super()._load_from_state_dict(*args, **kwargs)

    def min_spacing(self) -> float:
        """Smallest distance between neighbouring active centres (m), for CFL limits.

        Computed once: ``rollout`` asks for the stable step at every call, and a masked
        reduction there would cost a device synchronisation per training step.
        """
        if self._min_spacing is None:
            act = self.active.bool()
            spacing = torch.minimum(self.dx_east.abs()[act].min(), self.dy_north.abs()[act].min())
            self._min_spacing = float(spacing)
        return self._min_spacing

    def area_weights(self) -> Tensor:
        """Cell areas of active cells normalised to sum to 1, ``[ny, nx]``."""
        a = self.area * self.active
        return a / a.sum()

    def extra_repr(self) -> str:
        return f"kind={self.kind}, shape={self.shape}, periodic={self.periodic}"
