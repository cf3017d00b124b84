"""Finite-volume geometry of a 1-D or 2-D grid: a line or box in metres, a longitude circle or a
regular lat-lon grid on the sphere.

Every field lives at cell centres with the grid on its last axes: ``[..., ny, nx]`` in 2-D
(axis -2 is ``y``/latitude, axis -1 is ``x``/longitude), ``[..., nx]`` in 1-D (``x`` or
longitude; a time x longitude Hovmöller is a 1-D periodic grid). ``Grid.ndim`` is the rank;
vector components come eastward first (``(u,)`` in 1-D, ``(u, v)`` in 2-D), component ``k``
along tensor axis ``-1 - k``. A ``Grid`` stores, as buffers of the grid's shape, what the
flux-form operators in :mod:`hybrid.physics.operators` need (a 1-D grid has only the ``east``
ones, with unit face length: fluxes per unit cross-section):

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


def _active_mask(active: ArrayLike | None, shape: tuple[int, ...]) -> np.ndarray:
    if active is None:
        return np.ones(shape, dtype=bool)
    a = np.asarray(active)
    if a.shape != shape:
        raise ValueError(f"mask `active` must have the grid shape {shape}, got {a.shape}")
    if a.dtype != bool:
        raise ValueError(f"mask `active` must be boolean (True on active cells), got {a.dtype}")
    if not a.any():
        raise ValueError("mask `active` has no active cell")
    return a


def _open_faces(active: np.ndarray, axis: int, periodic: bool) -> np.ndarray:
    """1 where the face between a cell and its +index neighbour along ``axis`` is open."""
    open_ = active & np.roll(active, -1, axis=axis)
    if not periodic:  # the face from the last cell back to the first is a wall
        index = [slice(None)] * active.ndim
        index[axis] = -1
        open_[tuple(index)] = False
    return open_


# The geometry every factory gives, per rank; ``Grid.__init__`` derives the other buffers from it.
GEOMETRY = ("area", "dx_east", "dy_north", "len_east", "len_north", "y_north", "sin_lat", "tan_lat")
GEOMETRY_1D = ("area", "dx_east", "len_east", "sin_lat")
# Buffer names per vector component k (eastward first): spacing, face length, open faces, ...
SPACING, LENGTH, OPEN = (
    ("dx_east", "dy_north"),
    ("len_east", "len_north"),
    ("open_east", "open_north"),
)
WEIGHT, LENGTH_OPEN = ("w_east", "w_north"), ("len_open_east", "len_open_north")


class Grid(nn.Module):
    """Geometry buffers of a 1-D or 2-D finite-volume grid; build it with :meth:`box`,
    :meth:`regular_box`, :meth:`regular_line` or :meth:`latlon`.

    Attributes (besides the buffers listed in the module docstring):
        periodic: one bool per grid axis, in axis order: ``(periodic_y, periodic_x)`` or
            ``(periodic_x,)``.
        kind: ``"box"`` or ``"latlon"``.
        shape: ``(ny, nx)`` or ``(nx,)``.
        ndim: the number of spatial axes, 1 or 2.
        radius: sphere radius (m) of a lat-lon grid, ``inf`` on a box (no metric terms).
    Buffers ``y_north`` (northward distance from the grid's mid-row, m) and ``sin_lat``/``tan_lat``
    (zero on a box) serve the Coriolis and metric terms (2-D; a 1-D circle keeps ``sin_lat``).
    """

    radius: float = math.inf

    def __init__(self, geometry: dict[str, np.ndarray], *, periodic: tuple[bool, ...], kind: str):
        super().__init__()
        active = geometry.pop("active")
        if active.ndim not in (1, 2) or len(periodic) != active.ndim:
            raise ValueError(
                f"a grid has 1 or 2 axes and one periodic flag per axis, got shape "
                f"{active.shape} and periodic {tuple(periodic)}"
            )
        self.periodic, self.kind, self._min_spacing = tuple(periodic), kind, None
        self.shape, self.ndim = tuple(active.shape), active.ndim
        buffers = {**geometry, "active": active}
        for k in range(self.ndim):  # axis of component k: -1 - k
            buffers[OPEN[k]] = _open_faces(active, self.ndim - 1 - k, periodic[-1 - k])
        dtype = torch.get_default_dtype()
        for name, value in buffers.items():
            self.register_buffer(name, torch.tensor(np.array(value, np.float64), dtype=dtype))
        # Weights of the Laplacian (flux-form: open * face length / centre distance) and 1/area,
        # zero at inactive cells so that their tendency is zero.
        for k in range(self.ndim):
            spacing, length, open_ = (self.get_buffer(n[k]) for n in (SPACING, LENGTH, OPEN))
            self.register_buffer(WEIGHT[k], open_ * length / spacing)
            self.register_buffer(LENGTH_OPEN[k], length * open_)  # uniform flows
        self.register_buffer("inv_area", self.active / self.area)

    def faces(self, k: int) -> tuple[Tensor, Tensor, Tensor]:
        """``(spacing, weight, length_open)`` of the faces on the ``+index`` side along the
        axis of component ``k`` (0 eastward, 1 northward), each of the grid's shape."""
        buffers = self._buffers  # direct: operators call this in the solver's inner loop
        return buffers[SPACING[k]], buffers[WEIGHT[k]], buffers[LENGTH_OPEN[k]]

    def open(self, k: int) -> Tensor:
        """1 where the face on the ``+index`` side along component ``k``'s axis is open."""
        return self._buffers[OPEN[k]]

    @classmethod
    def box(
        cls,
        x: ArrayLike,
        y: ArrayLike | None = None,
        *,
        periodic: tuple[bool, ...] | bool = True,
        active: ArrayLike | None = None,
    ) -> Grid:
        """A rectangle in metres with cell centres at ``x`` (``[nx]``) and ``y`` (``[ny]``), or,
        without ``y``, a line of cells centred at ``x``.

        Args:
            x, y: evenly spaced, strictly monotonic centre coordinates (m).
            periodic: ``(periodic_y, periodic_x)`` (``(periodic_x,)`` on a line) or one bool.
            active: boolean ``[ny, nx]`` (``[nx]`` on a line), True on active cells (default: all).
        """
        if y is None:
            return cls._line(_coordinate(x, "x"), periodic, active)
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
    def _line(cls, xc: np.ndarray, periodic: tuple[bool, ...] | bool, active) -> Grid:
        """A 1-D box: cells of length ``|dx|``, faces of unit cross-section signed like ``dx``."""
        per = (periodic,) if isinstance(periodic, bool) else tuple(periodic)
        if len(per) != 1:
            raise ValueError(f"a line has one axis: periodic must be one bool, got {per}")
        dx, ones = _step(xc), np.ones(xc.size)
        geometry = {
            "area": ones * abs(dx),
            "dx_east": ones * dx,
            "len_east": ones * np.sign(dx),
            "sin_lat": ones * 0.0,
            "active": _active_mask(active, (xc.size,)),
        }
        return cls(geometry, periodic=per, kind="box")

    @classmethod
    def regular_line(cls, nx: int, dx: float, *, periodic: bool = True, **kwargs: object) -> Grid:
        """A line of ``nx`` cells of length ``dx`` (m) starting at the origin."""
        if dx <= 0:
            raise ValueError(f"dx must be positive, got dx={dx}")
        if nx < 2:
            raise ValueError(f"nx must be at least 2, got nx={nx}")
        return cls.box(np.arange(nx) * dx, periodic=periodic, **kwargs)

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
        """A regular latitude-longitude grid on a sphere of ``radius`` (m), or, when ``lat`` is one
        number, the 1-D circle of longitudes at that latitude (a Hovmöller's grid).

        Latitude may ascend or descend; longitude ascends (0..360, -180..180, or across the
        dateline). The grid is periodic in longitude when the longitudes close the circle.
        Cells centred on a pole are degenerate (zero zonal width): they are made inactive, with a
        warning. Cell areas are exact spherical bands ``R² Δλ |sin φ_{j+½} - sin φ_{j-½}|``; on a
        circle a cell's "area" is its length ``R cos φ Δλ``.

        Args:
            lat: ``[ny]`` cell-centre latitudes in degrees, or a scalar: a circle.
            lon: ``[nx]`` cell-centre longitudes in degrees.
            active: boolean ``[ny, nx]`` (``[nx]`` on a circle), True on active cells.
            radius: sphere radius in metres.
        """
        if radius <= 0:
            raise ValueError(f"radius must be positive, got {radius}")
        lonc = _coordinate(lon, "lon", unwrap_degrees=True)
        if lonc[1] < lonc[0]:
            raise ValueError("lon must ascend (east-ward); reverse it before building the grid")
        dlam = np.deg2rad(_step(lonc))
        periodic_x = bool(abs(lonc.size * dlam - 2 * math.pi) < 1e-6 * 2 * math.pi)
        if lonc.size * dlam > 2 * math.pi * (1 + 1e-6):
            raise ValueError(f"lon spans more than 360 degrees ({lonc.size} x {np.rad2deg(dlam)})")
        if np.ndim(lat) == 0:
            return cls._circle(float(lat), lonc.size, dlam, periodic_x, active, radius)
        latc = _coordinate(lat, "lat")
        if np.abs(latc).max() > 90:
            raise ValueError(f"lat must lie in [-90, 90], got {latc.min()}..{latc.max()}")
        dphi = np.deg2rad(_step(latc))
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

    @classmethod
    def _circle(cls, lat: float, nx: int, dlam: float, periodic: bool, active, radius: float):
        """The longitudes at latitude ``lat`` (degrees): cells of length ``R cos φ Δλ``."""
        if not (math.isfinite(lat) and abs(lat) < 90):
            raise ValueError(f"a longitude circle needs a latitude in (-90, 90), got {lat}")
        phi, ones = math.radians(lat), np.ones(nx)
        geometry = {
            "area": ones * radius * math.cos(phi) * dlam,
            "dx_east": ones * radius * math.cos(phi) * dlam,
            "len_east": ones,
            "sin_lat": ones * math.sin(phi),
            "active": _active_mask(active, (nx,)),
        }
        grid = cls(geometry, periodic=(periodic,), kind="latlon")
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
        geometry = {name: np.ones(shape) for name in (GEOMETRY_1D if len(shape) == 1 else GEOMETRY)}
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
            spacing = min(float(self.faces(k)[0].abs()[act].min()) for k in range(self.ndim))
            self._min_spacing = spacing
        return self._min_spacing

    def area_weights(self) -> Tensor:
        """Cell areas (lengths in 1-D) of active cells normalised to sum to 1, the grid's shape."""
        a = self.area * self.active
        return a / a.sum()

    def extra_repr(self) -> str:
        return f"kind={self.kind}, shape={self.shape}, periodic={self.periodic}"
