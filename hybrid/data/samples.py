"""Real climate files that ship inside PyPI packages (nothing is downloaded at run time)."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

from hybrid.data.io import replacing

SAMPLES = {
    # name: (package, file inside it, pip extra)
    "ostia": ("iris_sample_data", "sample_data/ostia_monthly.nc", "ostia"),
}


def sample_path(name: str) -> Path:
    """The installed file of sample ``name``.

    Raises:
        ValueError: for an unknown name, or when its package is not installed (naming the extra).
    """
    if name not in SAMPLES:
        raise ValueError(f"unknown sample {name!r}; choose from {sorted(SAMPLES)}")
    package, inner, extra = SAMPLES[name]
    try:
        module = importlib.import_module(package)
    except ImportError as err:
        raise ValueError(
            f'sample {name!r} needs the `{package}` package: pip install -e ".[{extra}]"'
        ) from err
    return Path(module.__file__).parent / inner


def copy_sample(name: str, output: str | Path, *, overwrite: bool = False) -> Path:
    """Copy sample ``name`` to ``output`` atomically (:func:`hybrid.data.io.replacing`)."""
    with replacing(output, overwrite) as tmp:
        shutil.copyfile(sample_path(name), tmp)
    return Path(output)
