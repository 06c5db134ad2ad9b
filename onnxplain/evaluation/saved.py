"""Maps saved earlier, to evaluate without running the methods again: result folders of
``onnxplain explain`` and bare ``.npy`` files from any tool."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from onnxplain.errors import OnnxplainError, first_line

_RECORD = "explanation.json"
_MAP = "saliency.npy"


def read_saved_maps(paths: Iterable[str | Path]) -> dict[str, np.ndarray]:
    """Read saliency maps by name from result folders and ``.npy`` files.

    Each path is one of:

    - a ``.npy`` file: one map, named by the file's name without ``.npy``;
    - a result folder of ``onnxplain explain`` (``explanation.json`` and ``saliency.npy``):
      its map, named by the folder;
    - any other folder: each result folder directly inside it and each ``.npy`` file directly
      inside it, in name order.

    Names that two paths share are replaced by those paths in full. The maps are not checked
    against an image here; `onnxplain.evaluation.runner.check_map` does that.

    Parameters
    ----------
    paths : iterable of str or Path
        Files and folders.

    Returns
    -------
    dict of str to ndarray

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> np.save(folder / "gradcam.npy", np.zeros((4, 4)))
    >>> {name: m.shape for name, m in read_saved_maps([folder]).items()}
    {'gradcam': (4, 4)}
    """
    found: list[tuple[str, Path]] = []
    for path in map(Path, paths):
        found += _maps_at(path)
    if not found:
        raise OnnxplainError("give at least one saved map (a .npy file or a result folder of onnxplain explain)")
    names = [name for name, _ in found]
    maps = {}
    for name, file in found:
        if names.count(name) > 1:
            name = str(file.parent if file.name == _MAP else file.with_suffix(""))
        maps[name] = _load(file)
    return maps


def _maps_at(path: Path) -> list[tuple[str, Path]]:
    if path.is_file():
        if path.suffix != ".npy":
            raise OnnxplainError(f"{path} is not a .npy file; give .npy maps or result folders of onnxplain explain")
        return [(path.stem, path)]
    if not path.is_dir():
        raise OnnxplainError(f"saved map not found: {path}")
    if (path / _RECORD).is_file():
        return [(path.name, _map_file(path))]
    found = [(child.name, _map_file(child)) for child in sorted(path.iterdir())
             if child.is_dir() and (child / _RECORD).is_file()]
    found += [(file.stem, file) for file in sorted(path.glob("*.npy"))]
    if not found:
        raise OnnxplainError(f"{path} holds neither result folders of onnxplain explain ({_RECORD} and {_MAP}) "
                             "nor .npy maps")
    return found


def _map_file(folder: Path) -> Path:
    if not (folder / _MAP).is_file():
        raise OnnxplainError(f"{folder} has {_RECORD} but no {_MAP}; it is not a whole result of onnxplain explain")
    return folder / _MAP


def _load(file: Path) -> np.ndarray:
    try:
        return np.load(file, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise OnnxplainError(f"cannot read the map {file}: {first_line(error)}") from error
