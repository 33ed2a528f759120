import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def data_dir(var, default):
    """A test-data folder: `var` if set (relative paths from the workspace root), else the
    repository's own copy (DESIGN section 3)."""
    value = os.environ.get(var)
    path = pathlib.Path(value) if value else ROOT / default
    return path if path.is_absolute() else ROOT / path
