"""onnxruntime sessions: providers, threads, graph optimisation and the optimised-model cache.

With `onnxplain.model` and `onnxplain.precision`, one of the three modules that import onnxruntime;
the rest of onnxplain never sees it. A session is made from a model file or its bytes with
`SessionSettings`; what was chosen (threads, optimisation level, whether the optimised model came
from the cache) is returned as plain data for the records.

The cache holds onnxruntime's optimised graph of a model (``optimized_model_filepath``), keyed by
the model's SHA-256, the settings, the device and the onnxruntime version; a cached graph is
loaded with optimisation turned off, so the optimisation is not done twice. Optimised graphs may
hold kernels chosen for this processor, so the cache folder belongs to one machine.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime as ort

from onnxplain.errors import OnnxplainError, first_line

OPTIMIZATIONS = ("disable", "basic", "extended", "all")
"""onnxruntime's graph optimisation levels, from none to every fusion and layout change."""

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_ORT_DEFAULT_SEVERITY = 2  # onnxruntime's own default: warnings and above


def default_cache_folder() -> Path:
    """``$ONNXPLAIN_CACHE``, else ``$XDG_CACHE_HOME/onnxplain``, else ``~/.cache/onnxplain``."""
    if os.environ.get("ONNXPLAIN_CACHE"):
        return Path(os.environ["ONNXPLAIN_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "onnxplain"


@functools.cache
def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads counted once); the logical count if unknown."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    cores = set()
    for cpu in allowed:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topology / "physical_package_id").read_text(), (topology / "core_id").read_text()))
        except OSError:  # not Linux, or no topology: every logical processor counts
            return len(allowed)
    return max(len(cores), 1)


@dataclass(frozen=True)
class SessionSettings:
    """How onnxruntime runs a model.

    Parameters
    ----------
    threads : int, optional
        Threads inside one operator (onnxruntime's intra-op threads); the physical cores this
        process may use when omitted.
    optimization : {'disable', 'basic', 'extended', 'all'}
        onnxruntime's graph optimisation level.
    cache : Path, optional
        Folder of optimised graphs (and of reduced-precision models); None keeps nothing on disk.
    """

    threads: int | None = None
    optimization: str = "all"
    cache: Path | None = None

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise OnnxplainError(f"threads must be at least 1, got {self.threads}", parameters=("threads",))
        if self.optimization not in OPTIMIZATIONS:
            raise OnnxplainError(f"optimization must be one of {', '.join(OPTIMIZATIONS)}; got {self.optimization!r}",
                                 parameters=("optimization",))

    @property
    def intra_op_threads(self) -> int:
        """The threads actually asked of onnxruntime."""
        return self.threads if self.threads is not None else physical_cores()


def create_session(
    source: Path | bytes, device: str, settings: SessionSettings | None = None, *, sha256: str | None = None,
    label: str | None = None,
) -> tuple[ort.InferenceSession, dict[str, Any]]:
    """Make an onnxruntime session of `source` on `device`, through the optimised-model cache.

    Parameters
    ----------
    source : Path or bytes
        The model file, or a serialised model.
    device : {'auto', 'cpu', 'cuda'}
        Execution provider, as `onnxplain.model.OnnxModel` takes it.
    settings : SessionSettings, optional
        Threads, optimisation and cache; the defaults when omitted.
    sha256 : str, optional
        The model's SHA-256: the cache's key. Without it (or without a cache folder) nothing is cached.
    label : str, optional
        How messages name the model; the path when omitted.

    Returns
    -------
    session : onnxruntime.InferenceSession
    record : dict
        The settings used and how the session was made, as plain data.
    """
    settings = settings or SessionSettings()
    providers = _providers(device)
    label = label or str(source)
    cached = _cache_path(settings, sha256, providers)
    record: dict[str, Any] = {"intra_op_threads": settings.intra_op_threads,
                              "threads_source": "set" if settings.threads is not None else "physical cores",
                              "graph_optimization": settings.optimization, "optimized_model_cache": "off"}
    started = time.perf_counter()
    session = None
    if cached is not None and cached.is_file():
        try:  # already optimised: load it as it is
            session = _session(cached, providers, _options(settings, "disable"))
            record["optimized_model_cache"] = "hit"
        except Exception:  # a truncated or foreign file: made again below
            cached.unlink(missing_ok=True)
    if session is None:
        options = _options(settings, settings.optimization)
        temporary = None
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            temporary = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
            options.optimized_model_filepath = str(temporary)
        try:
            session = _session(source, providers, options)
        except Exception as error:
            raise OnnxplainError(f"onnxruntime could not load {label}: {first_line(error)}") from error
        finally:
            if cached is not None and temporary is not None and temporary.is_file():
                os.replace(temporary, cached)  # whole or not at all: a reader never sees a partial graph
                record["optimized_model_cache"] = "written"
    if cached is not None:
        record["optimized_model_file"] = str(cached)
    record["seconds"] = round(time.perf_counter() - started, 4)
    if device == "cuda" and session.get_providers()[0] != CUDA:
        raise OnnxplainError(
            "the CUDA device was asked for, but onnxruntime could not start CUDA here (no GPU, or CUDA/cuDNN "
            "libraries missing: see onnxruntime's CUDA requirements); use the CPU or let onnxplain choose (auto)",
            parameters=("device",),
        )
    return session, record


def _providers(device: str) -> list[str]:
    available = ort.get_available_providers()
    if device != "cpu" and CUDA in available:
        _preload_cuda_libraries()
    if device == "cuda" and CUDA not in available:
        raise OnnxplainError(
            f"the CUDA device needs onnxruntime's CUDA execution provider, but this onnxruntime "
            f"({ort.__version__}) offers only {', '.join(available)}; install onnxruntime-gpu or use the CPU",
            parameters=("device",),
        )
    return [CUDA, CPU] if device != "cpu" and CUDA in available else [CPU]


def _cache_path(settings: SessionSettings, sha256: str | None, providers: list[str]) -> Path | None:
    if settings.cache is None or sha256 is None or settings.optimization == "disable":
        return None
    key = f"{sha256}|{settings.optimization}|{','.join(providers)}|{ort.__version__}"  # threads: same graph
    return settings.cache / "optimized" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.onnx"


def _options(settings: SessionSettings, optimization: str) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = _LEVELS[optimization]
    options.intra_op_num_threads = settings.intra_op_threads
    return options


def _session(source: Path | bytes, providers: list[str], options: ort.SessionOptions) -> ort.InferenceSession:
    with quiet_onnxruntime():
        return ort.InferenceSession(source if isinstance(source, bytes) else str(source), options,
                                    providers=providers)


@contextlib.contextmanager
def quiet_onnxruntime() -> Iterator[None]:
    """Silence onnxruntime's logger: a missing CUDA library is expected on CPU machines, and the
    warning that an optimised graph suits this machine only is what the cache relies on."""
    ort.set_default_logger_severity(4)
    try:
        yield
    finally:
        ort.set_default_logger_severity(_ORT_DEFAULT_SEVERITY)


@functools.cache
def _preload_cuda_libraries() -> None:
    """Load CUDA and cuDNN from pip's ``nvidia-*`` packages where they are installed.

    onnxruntime-gpu's CUDA provider finds its libraries only on the loader's path; installed with
    ``pip install onnxruntime-gpu[cuda,cudnn]`` (or beside a PyTorch of the same CUDA) they sit in
    site-packages instead, which ``onnxruntime.preload_dlls`` searches. It prints what it cannot
    find, which on a machine without CUDA is expected, so its output is kept back.
    """
    preload = getattr(ort, "preload_dlls", None)  # onnxruntime >= 1.21
    if preload is None:
        return
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), quiet_onnxruntime():
        try:
            preload()
        except Exception:  # an unusual layout of nvidia packages: the loader's path is left to work alone
            pass
