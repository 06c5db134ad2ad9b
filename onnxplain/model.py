"""Run an ONNX segmentation model on batches of images: the only module that imports onnxruntime.

Images enter in *image space*: float arrays shaped (n, H, W, C), or (n, D, H, W, C) for volumes,
usually in [0, 1], exactly what perturbations produce. `OnnxModel` scales and normalises them,
orders the channels and the axes the way the model wants, runs onnxruntime in chunks of
``batch_size`` images (or, for volumes larger than the model's patch, patch by patch; see
`onnxplain.patches`), and turns the chosen output into the probability of the chosen class and a
binary mask.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from onnxplain.batching import batches, out_of_memory
from onnxplain.errors import OnnxplainError, first_line
from onnxplain.layers import Layer, default_layer, expose_layer, feed_layer, find_layer, list_layers
from onnxplain.outputs import ModelOutput, OutputReader
from onnxplain.patches import PatchGrid, check_patch_output
from onnxplain.precision import (
    CALIBRATION_COPIES,
    CALIBRATION_SEED,
    PRECISIONS,
    check_precision,
    check_values,
    compare,
    float32_fallbacks,
    image_key,
    perturbed_copies,
    reduce_model,
)
from onnxplain.resizing import resize_batch
from onnxplain.session import CUDA, SessionSettings, create_session, default_cache_folder
from onnxplain.signature import LAYOUTS, channel_axis, load_graph, output_name, producer_op, read_input_spec

DEVICES = ("auto", "cpu", "cuda")
COLORS = ("rgb", "bgr")


class OnnxModel:
    """An ONNX segmentation model loaded once and run in batches.

    Parameters
    ----------
    path : str or Path
        The ``.onnx`` file.
    device : {'auto', 'cpu', 'cuda'}
        Execution provider: ``'auto'`` uses CUDA when onnxruntime can start it here, else the CPU;
        ``'cuda'`` fails with an explanation when it cannot.
    batch_size : int
        Images per forward pass. Memory grows linearly with it: about ``batch_size`` times the
        model's activations for one image, plus the input and output tensors.
    layout : {'NCHW', 'NHWC', 'NHW', 'NCDHW', 'NDHWC'}, optional
        Axis order of the image input; read from the model's input shape when omitted. The last two
        take volumes: images (D, H, W, C).
    channels : int, optional
        Image channels, needed only when the model's input leaves the channel axis symbolic.
    color : {'rgb', 'bgr'}
        Channel order the model expects for 3-channel images (images are read as RGB and flipped
        before normalising when this is ``'bgr'``).
    scale, mean, std : float or sequence of float
        Normalisation applied after perturbation: ``(image * scale - mean) / std``, where images are
        in [0, 1]. ``mean`` and ``std`` take one value or one per channel, **in the channel order
        the model receives** (B, G, R for a ``'bgr'`` model), as model cards write them. `scale`
        defaults to 1, or to 255 for models whose input is uint8 (raw 0-255 pixels).
    resize : bool
        For a 2-D model of fixed input size: resize every image (perturbed ones included) to that
        size before it runs, and its output back to the image's size, so images of any size can
        be explained and every map, target and segment stays in the image's own pixels.
    patch : sequence of int, optional
        Run the model patch by patch, over windows of this spatial size that slide over the image
        (`onnxplain.patches`): for volumes larger than what the model takes, or than memory
        allows in one pass. A 3-D model of fixed input size runs on patches of that size without
        being asked. Outputs are blended with a Gaussian importance map. A perturbed image runs
        only the patches whose input it changed; the other patches' outputs are reused from the
        image being explained (see `prepare`), which gives the same output as running them all.
    overlap : float
        Share of a patch that the next one covers again, in [0, 1).
    reuse_patches : bool
        Reuse the explained image's patch outputs where a perturbed image equals it (the default);
        False runs every patch of every image, for comparisons.
    output : int or str
        Which model output to explain by default, by index or name; a `Target` may name another.
    class_index : int
        Channel of that output (the class) to explain by default; a `Target` may name another.
    activation : {'auto', 'sigmoid', 'softmax', 'none'}
        How raw outputs become probabilities. ``'auto'`` uses ``'none'`` when the output is made by a
        Sigmoid or Softmax node, else ``'sigmoid'`` for one channel and ``'softmax'`` for several.
        An integer output is a label map whatever this says: a pixel belongs to the class whose
        number it holds (probability 1, else 0).
    threshold : float, optional
        Probability above which a pixel belongs to the class. Omitted: 0.5, except for softmax
        outputs of several classes, where a pixel belongs to the class that has the highest
        probability there.
    precision : {'fp32', 'fp16', 'int8'}
        Precision of the predictions (see `onnxplain.precision`). A reduced one is made and
        checked against fp32 by `prepare` on the image being explained (int8 is calibrated on
        it), and refused when it changes the answer. Layer activations always run in fp32.
    min_dice, min_correlation : float
        Thresholds of that check: the Dice of the two segments of the class, and the correlation
        of the two models' scores over perturbed copies of the image.
    threads : int, optional
        onnxruntime's intra-op threads; the machine's physical cores when omitted.
    optimization : {'disable', 'basic', 'extended', 'all'}
        onnxruntime's graph optimisation level.
    cache : bool, str or Path
        Folder that keeps optimised graphs and reduced models between runs, keyed by the model's
        SHA-256; True for the default folder (``$ONNXPLAIN_CACHE``, else ``~/.cache/onnxplain``),
        False to keep nothing on disk. Never written beside the model.

    Examples
    --------
    >>> from onnxplain import data
    >>> model = OnnxModel(data.testnet_model_path(), device="cpu")
    >>> model.input.layout, model.input.channels
    ('NCHW', 1)
    >>> out = model.predict(data.load_sample(0).image[None, :, :, None])
    >>> out.probability.shape, out.mask.dtype
    ((1, 240, 240), dtype('bool'))
    """

    serves: frozenset[str]
    """What methods can ask of this model: predictions, and any layer's activations (onnxruntime has no
    gradients) when the model runs on whole images, not patches."""

    def __init__(
        self,
        path: str | Path,
        *,
        device: str = "auto",
        batch_size: int = 16,
        layout: str | None = None,
        channels: int | None = None,
        color: str = "rgb",
        scale: float | None = None,
        mean: float | Sequence[float] = 0.0,
        std: float | Sequence[float] = 1.0,
        output: int | str = 0,
        class_index: int = 0,
        activation: str = "auto",
        threshold: float | None = None,
        resize: bool = False,
        patch: Sequence[int] | None = None,
        overlap: float = 0.5,
        reuse_patches: bool = True,
        precision: str = "fp32",
        min_dice: float = 0.95,
        min_correlation: float = 0.95,
        threads: int | None = None,
        optimization: str = "all",
        cache: bool | str | Path = True,
    ):
        _check_choice("device", device, DEVICES)
        _check_choice("precision", precision, PRECISIONS)
        _check_choice("color", color, COLORS)
        if layout is not None:
            _check_choice("layout", layout, LAYOUTS)
        if batch_size < 1:
            raise OnnxplainError(f"batch_size must be at least 1, got {batch_size}")
        if not 0 <= overlap < 1:
            raise OnnxplainError(f"overlap is a share of the patch in [0, 1), got {overlap}", parameters=("overlap",))
        if scale is not None and (not np.isfinite(scale) or scale == 0):
            raise OnnxplainError(f"scale must be a finite non-zero number, got {scale}")

        self.path = Path(path)
        self._settings: dict[str, Any] = dict(
            layout=layout, channels=channels, color=color, scale=scale, mean=mean, std=std, output=output,
            class_index=class_index, activation=activation, threshold=threshold, resize=resize, patch=patch,
            overlap=overlap, reuse_patches=reuse_patches, precision=precision, min_dice=min_dice,
            min_correlation=min_correlation, threads=threads, optimization=optimization, cache=cache)
        graph = load_graph(self.path)
        folder = None if cache is False else default_cache_folder() if cache is True else Path(cache)
        self.session_settings = SessionSettings(threads=threads, optimization=optimization, cache=folder)
        self._sha256: str | None = None
        self._session, self._session_record = create_session(
            self.path, device, self.session_settings, sha256=self.sha256 if folder is not None else None)
        self.providers: list[str] = self._session.get_providers()
        self.device = "cuda" if self.providers[0] == CUDA else "cpu"
        self.input = read_input_spec(self._session.get_inputs(), layout, channels)
        check_precision(precision, graph, self.input.dtype)
        self.precision = precision
        self.min_dice, self.min_correlation = min_dice, min_correlation
        # The session predictions run on: fp32's at once; a reduced one only once `prepare` has
        # made it and checked it on the image.
        self._predicting: ort.InferenceSession | None = self._session if precision == "fp32" else None
        self._reduced: ort.InferenceSession | None = None
        self._prepared: str | None = None
        self._precision_record: dict[str, Any] = {"name": precision}
        self.batch_size = batch_size
        self.color = color
        self.scale = float(scale if scale is not None else 255 if self.input.dtype == np.uint8 else 1)
        self.mean = _per_channel("mean", mean, self.input.channels)
        self.std = _per_channel("std", std, self.input.channels)
        if np.any(self.std == 0):
            raise OnnxplainError("std must not contain zeros: it divides the image")
        self._output_names = [o.name for o in self._session.get_outputs()]
        self.output_name = output_name(self._output_names, output)
        self._activation, self._threshold = activation, threshold
        self._producers = {name: producer_op(graph, name) for name in self._output_names}
        self._readers: dict[str, OutputReader] = {}
        self.reader = self._reader(self.output_name)
        self.reader.class_index = _check_class(class_index)
        fixed = None not in self.input.spatial
        if resize and len(self.input.spatial) != 2:
            raise OnnxplainError("resize applies to 2-D models; a volume model runs on patches of its size instead",
                                 parameters=("resize",))
        height, width = self.input.spatial[-2:]
        self.resize_to = (height, width) if resize and height is not None and width is not None else None
        """The model's own size that images are resized to, when `resize` applies."""
        self.patch = self._patch_size(patch, fixed)
        """Spatial size of the patches the model runs on, None when it runs on whole images."""
        self.overlap = overlap
        self.reuse_patches = reuse_patches
        self.serves = frozenset({"predictions"} if self.patch else {"predictions", "activations"})
        self._grids: dict[tuple[int, ...], PatchGrid] = {}
        self._patch_base: np.ndarray | None = None  # the image being explained, whose patch outputs are reused
        self._patch_outputs: dict[tuple[int, str], dict[int, np.ndarray]] = {}
        self.patch_counts: dict[str, int] = {"run": 0, "reused": 0} if self.patch else {}
        """Patches run through the model, and patches whose output was reused, so far (empty without patches)."""
        self._layers: list[Layer] | None = None
        self._layer_sessions: dict[tuple[str, str], ort.InferenceSession] = {}
        self.inference_seconds = 0.0
        """Time spent inside onnxruntime so far, in seconds (what explanations record as inference)."""

    def _patch_size(self, patch: Sequence[int] | None, fixed: bool) -> tuple[int, ...] | None:
        """The patch size asked for, or the model's own for a fixed-size volume model; checked."""
        rank = len(self.input.spatial)
        if patch is None:
            return tuple(self.input.spatial) if fixed and rank == 3 else None  # type: ignore[arg-type]
        size = tuple(int(side) for side in patch)
        if len(size) != rank or min(size) < 1:
            raise OnnxplainError(f"patch {size} does not fit the model's {rank} spatial axes; give {rank} positive "
                                 "sizes", parameters=("patch",))
        if any(want is not None and want != side for want, side in zip(self.input.spatial, size, strict=True)):
            raise OnnxplainError(f"the model takes inputs of {_size_text(self.input.spatial)} only; give a patch "
                                 "of that size", parameters=("patch",))
        return size

    def reopen(self, path: str | Path) -> OnnxModel:
        """Load another ONNX file (a re-initialised copy of this model, say) with this model's settings."""
        return OnnxModel(path, device=self.device, batch_size=self.batch_size, **self._settings)

    def _reader(self, name: str) -> OutputReader:
        """The reader of output `name`, made once (it settles the activation on its first batch)."""
        if name not in self._readers:
            self._readers[name] = OutputReader(name, channels_last=self.input.layout.endswith("C"),
                                               spatial_rank=len(self.input.spatial),
                                               producer=self._producers[name], activation=self._activation,
                                               threshold=self._threshold)
        return self._readers[name]

    @property
    def spatial_shape(self) -> tuple[int | None, ...]:
        """The input's spatial size, one entry per axis (None where the model takes any size)."""
        if self.resize_to is not None or self.patch is not None:
            return (None,) * len(self.input.spatial)
        return self.input.spatial

    # --- image side -------------------------------------------------------------------------

    def check_image(self, image: np.ndarray) -> np.ndarray:
        """Return `image` as float32 (*spatial, C) after checking that the model takes it.

        Parameters
        ----------
        image : ndarray, shape (H, W), (H, W, C), (D, H, W) or (D, H, W, C)
            Image (or volume, for a 3-D model) in image space (the [0, 1] range that `scale` maps to
            the model's range).

        Returns
        -------
        ndarray of float32, shape (*spatial, C)
        """
        image = np.asarray(image)
        rank = len(self.input.spatial)
        if image.ndim == rank:
            image = image[..., None]
        if image.ndim != rank + 1:
            shapes = "(H, W) or (H, W, C)" if rank == 2 else "(D, H, W) or (D, H, W, C)"
            what = "an image" if rank == 2 else "a volume"
            raise OnnxplainError(f"the model takes {what} shaped {shapes}, got shape {image.shape}")
        spatial, channels = image.shape[:-1], image.shape[-1]
        if channels != self.input.channels:
            raise OnnxplainError(
                f"the image has {channels} channel(s) but the model takes {self.input.channels}; "
                + ("convert the image (grayscale or RGB) to match" if rank == 2
                   else "give a volume of as many modalities")
            )
        if self.patch is not None:
            if any(side < size for side, size in zip(spatial, self.patch, strict=True)):
                raise OnnxplainError(
                    f"the volume is {_size_text(spatial)} voxels, smaller than the model's patch of "
                    f"{_size_text(self.patch)}; pad the volume to at least the patch size", parameters=("patch",))
        elif any(want is not None and want != side for want, side in zip(self.spatial_shape, spatial, strict=True)):
            if rank == 2:
                raise OnnxplainError(
                    f"the image is {_size_text(spatial)} (width x height) but the model takes "
                    f"{_size_text(self.spatial_shape)}; resize the image to the model's input size, or let onnxplain "
                    "resize it", parameters=("resize",))
            raise OnnxplainError(f"the volume is {_size_text(spatial)} voxels but the model takes "
                                 f"{_size_text(self.spatial_shape)}; give a patch size to run it patch by patch",
                                 parameters=("patch",))
        if not np.isfinite(image).all():
            raise OnnxplainError("the image contains NaN or infinite values")
        return image.astype(np.float32, copy=False)

    def to_tensor(self, images: np.ndarray) -> np.ndarray:
        """Normalise a batch (n, *spatial, C) in image space and arrange it as the model input."""
        x = images if self.resize_to is None else resize_batch(images, self.resize_to)
        if self.color == "bgr" and self.input.channels == 3:
            x = x[..., ::-1]  # before normalising: mean and std are in the model's channel order
        gain, shift = self.scale / self.std, self.mean / self.std  # (x * scale - mean) / std
        if channel_axis(self.input.layout) == 1:
            # A view: the one pass below reads it and writes the model's order (one channel: no copy at all).
            x = np.moveaxis(x, -1, 1)
            gain, shift = (v.reshape(-1, *(1,) * len(self.input.spatial)) for v in (gain, shift))
        elif self.input.layout == "NHW":
            x = x[..., 0]
        if self.scale != 1 or self.mean.any() or (self.std != 1).any():
            out = np.empty(x.shape, np.float32)
            np.multiply(x, gain, out=out)
            if shift.any():
                out -= shift
            x = out
        if self.input.dtype == np.uint8:
            x = np.clip(np.rint(x), 0, 255)
        return np.ascontiguousarray(x, dtype=self.input.dtype)

    # --- running ----------------------------------------------------------------------------

    def predict(
        self, images: np.ndarray, *, class_index: int | None = None, output: int | str | None = None
    ) -> ModelOutput:
        """Run the model on a batch of images and interpret one class of one output.

        Parameters
        ----------
        images : ndarray, shape (n, *spatial, C)
            Images in image space; `check_image` tells whether the model takes them.
        class_index : int, optional
            The class (output channel); the model's default when omitted.
        output : int or str, optional
            The output, by index or name; the model's default when omitted.

        Returns
        -------
        ModelOutput
            Probabilities computed lazily, where a score reads them.
        """
        if images.ndim != len(self.input.spatial) + 2:
            axes = "H, W" if len(self.input.spatial) == 2 else "D, H, W"
            raise OnnxplainError(f"predict takes a batch shaped (n, {axes}, C), got shape {images.shape}")
        name = self.output_name if output is None else output_name(self._output_names, output)
        chosen = self.reader.class_index if class_index is None else _check_class(class_index)
        if self.patch is not None:
            return self._reader(name).read(self._predict_patches(images, name), chosen)
        # The batch is prepared and read once, whatever the forward-pass size: a model fixed to
        # batch 1 then costs one onnxruntime call per image and nothing more.
        tensor = self.to_tensor(images)
        raw = [self.run_tensor(chunk, name)[:keep] for (chunk,), keep in self._chunks(tensor)]
        return self._read(raw, name, chosen, images.shape[1:-1])

    def _predict_patches(self, images: np.ndarray, name: str) -> np.ndarray:
        """Raw output `name` of each image, blended from its patches, in the layout the model gives.

        Patches of an image that equal those of the image being explained (`prepare`'s) reuse its
        outputs: a perturbation that hides a sphere runs only the few patches the sphere reaches.
        """
        spatial = images.shape[1:-1]
        grid = self._grids.get(spatial)
        if grid is None:
            grid = self._grids[spatial] = PatchGrid(spatial, self.patch, overlap=self.overlap)  # type: ignore[arg-type]
        base = self._patch_base
        if not self.reuse_patches or base is None or base.shape != images.shape[1:]:
            base = None
        known = self._patch_outputs.setdefault((id(self._predicting_session()), name), {}) if base is not None else {}
        blended: np.ndarray | None = None  # (n, K, *spatial), made once the number of channels K is known

        def add(i: int, p: int, values: np.ndarray) -> None:
            nonlocal blended
            if blended is None:
                blended = np.zeros((len(images), len(values), *spatial), np.float32)
            grid.add(blended[i], p, values)

        jobs: list[tuple[int, int, bool]] = []  # (image, patch, whether the patch equals the base's)
        for i, image in enumerate(images):
            same = ~grid.touched(np.any(image != base, axis=-1)) if base is not None else np.zeros(len(grid), bool)
            for p in range(len(grid)):
                if same[p] and p in known:
                    add(i, p, known[p])
                else:
                    jobs.append((i, p, bool(same[p])))
        self.patch_counts["reused"] += len(images) * len(grid) - len(jobs)
        self.patch_counts["run"] += len(jobs)
        for first in range(0, len(jobs), self.batch_size):
            chunk = jobs[first:first + self.batch_size]
            crops = np.stack([images[i][grid.windows[p]] for i, p, _ in chunk])
            raw = np.concatenate([self.run_tensor(part, name)[:keep]
                                  for (part,), keep in self._chunks(self.to_tensor(crops))])
            if raw.dtype.kind in "iub":
                raise OnnxplainError(f"output '{name}' holds class labels, which patches cannot be blended from; "
                                     "explain an output of scores or probabilities", parameters=("output",))
            first_axis = self._reader(name).channels_first(raw).astype(np.float32, copy=False)
            check_patch_output(first_axis, (len(chunk), self.input.channels, *grid.patch))
            for (i, p, same_as_base), values in zip(chunk, first_axis, strict=True):
                add(i, p, values)
                if same_as_base:
                    known[p] = values
        assert blended is not None  # every image has at least one patch
        blended /= grid.weights
        return np.moveaxis(blended, 1, -1) if self._reader(name).channels_last else blended

    def _predict_on(self, session: ort.InferenceSession, images: np.ndarray, **options: Any) -> ModelOutput:
        """`predict` on another session of this model (fp32's or a reduced one's), for the check."""
        saved, self._predicting = self._predicting, session
        try:
            return self.predict(images, **options)
        finally:
            self._predicting = saved

    def _predicting_session(self) -> ort.InferenceSession:
        if self._predicting is None:
            raise OnnxplainError(
                f"the {self.precision} model is made and checked on the image being explained: call "
                "prepare(image) first (make_baseline does)")
        return self._predicting

    def prepare(self, image: np.ndarray, *, class_index: int | None = None, output: int | str | None = None) -> None:
        """Get ready to explain `image`: the base of patch reuse, and the reduced-precision model.

        A model that runs on patches keeps `image`: later images run only the patches where they
        differ from it, and reuse its patch outputs elsewhere.

        At a reduced precision, int8 is calibrated on `image` and seeded perturbed copies of it;
        fp16 is converted once. Then both are compared with fp32 on `image`
        (`onnxplain.precision.compare`), and the figures recorded in `describe`. Calling it again
        with the same image does nothing.

        Parameters
        ----------
        image : ndarray
            The image to be explained, as `check_image` takes it.
        class_index, output
            The class and output that will be explained, as for `predict`.

        Raises
        ------
        OnnxplainError
            When the reduced model cannot be made or run, or agrees with fp32 less than `min_dice`
            or `min_correlation` say.
        """
        if self.patch is None and self.precision == "fp32":
            return
        image = self.check_image(image)
        if self.patch is not None and (self._patch_base is None or not np.array_equal(self._patch_base, image)):
            self._patch_base, self._patch_outputs = image.copy(), {}
            self.patch_counts = {"run": 0, "reused": 0}
        if self.precision == "fp32":
            return
        key = f"{image_key(image)}|{class_index}|{output}"
        if key == self._prepared:
            return
        self._predicting, self._prepared = None, None  # a refused model predicts nothing
        started = time.perf_counter()
        record: dict[str, Any] = {"name": self.precision}
        if self._reduced is None or self.precision == "int8":
            self._reduced, record["session"] = self._reduced_session(image)
            self._patch_outputs = {}  # outputs of an earlier reduced session are not this one's
        made = time.perf_counter()
        reduced = self._reduced

        def run_reduced(images: np.ndarray) -> ModelOutput:
            try:
                return self._predict_on(reduced, images, class_index=class_index, output=output)
            except OnnxplainError as error:
                raise OnnxplainError(f"the {self.precision} model does not run here ({error}); use precision "
                                     "fp32", parameters=("precision",)) from error

        agreement = compare(functools.partial(self._predict_on, self._session, class_index=class_index, output=output),
                            run_reduced, image)
        record.update(check={**agreement.describe(), "min_dice": self.min_dice,
                             "min_correlation": self.min_correlation},
                      seconds={"make": round(made - started, 3), "check": round(time.perf_counter() - made, 3)})
        self._precision_record = record
        agreement.check(self.precision, min_dice=self.min_dice, min_correlation=self.min_correlation)
        self._predicting, self._prepared = reduced, key

    def check_perturbed(self, perturb: Callable[[], np.ndarray], values: Callable[[ModelOutput], np.ndarray], *,
                        method: str, class_index: int | None = None, output: int | str | None = None) -> None:
        """At a reduced precision, compare the values a method computes from its own perturbed images.

        The general check of `prepare` perturbs the image in one way; a method perturbs it in its
        own (RISE with ``p1=0.1`` hides nine tenths of it, HDM's 2019 variant measures Hausdorff
        distances), and int8 may be faithful to one and not the other. Nothing at fp32.

        Parameters
        ----------
        perturb : callable
            Makes the perturbed images, as `predict` takes them; called only at a reduced precision.
        values : callable
            The method's values of a `ModelOutput` of them (its score's distances).
        method : str
            The method's name, for the record and the message.
        class_index, output
            As for `predict`.

        Raises
        ------
        OnnxplainError
            When the values correlate with fp32's less than `min_correlation`; the model then
            predicts nothing until `prepare` is called again.
        """
        if self.precision == "fp32":
            return
        reduced = self._predicting_session()
        options = {"class_index": class_index, "output": output}
        images = perturb()
        reference_values = values(self._predict_on(self._session, images, **options))
        reduced_values = values(self._predict_on(reduced, images, **options))
        check = self._precision_record.setdefault("check", {})
        try:
            check["method"] = check_values(self.precision, reference_values, reduced_values, method=method,
                                           min_correlation=self.min_correlation)
        except OnnxplainError:
            self._predicting, self._prepared = None, None  # a refused model predicts nothing
            raise

    def _reduced_session(self, image: np.ndarray) -> tuple[ort.InferenceSession, dict]:
        """A session of the model at the reduced precision (int8: calibrated on `image`)."""
        calibration, key = None, self.sha256
        if self.precision == "int8":
            copies = np.concatenate([image[None], perturbed_copies(image, CALIBRATION_COPIES, seed=CALIBRATION_SEED)])
            if self.patch is not None:  # the model takes patches: calibrate on a few of each copy's
                grid = PatchGrid(image.shape[:-1], self.patch, overlap=self.overlap)
                chosen = grid.windows[::max(1, len(grid) // 4)]
                copies = np.stack([copy[window] for copy in copies for window in chosen])
            calibration = self.to_tensor(copies)
            key = f"{key}|{image_key(calibration)}"
        data = reduce_model(self.path, self.precision, calibration=calibration, input_name=self.input.name,
                            cache=self.session_settings.cache, key=key)
        if self.precision == "fp16" and self.device == "cpu":
            casts, nodes = float32_fallbacks(data)
            if casts:
                raise OnnxplainError(
                    f"precision fp16 does not run in float16 on this CPU: onnxruntime has no float16 kernel for "
                    f"some of the model's {nodes} nodes, so it runs them in float32 behind {casts} added casts, "
                    "which saves nothing; use precision int8 or fp32", parameters=("precision",))
        try:
            return create_session(data, self.device, self.session_settings,
                                  sha256=hashlib.sha256(data).hexdigest(), label=f"the {self.precision} model")
        except OnnxplainError as error:
            raise OnnxplainError(f"precision {self.precision} cannot run this model on {self.device}: {error}; "
                                 "use precision fp32", parameters=("precision",)) from error

    def predict_with_layer(
        self, images: np.ndarray, layer: str, activations: np.ndarray, *, class_index: int | None = None,
        output: int | str | None = None,
    ) -> ModelOutput:
        """Run the model with feature map `layer` replaced by `activations`, the rest computed from `images`.

        The rest of the network (skip connections included) runs as usual; only what reads the
        layer reads `activations` instead. This is how Ablation-CAM runs the network on changed
        activations.

        Parameters
        ----------
        images : ndarray, shape (n, H, W, C)
            Images, as `predict` takes them.
        layer : str
            A feature map's name (see `layers`).
        activations : ndarray, shape (n, channels, h, w)
            What the layer holds instead, as `activations` returns it.
        class_index, output
            As for `predict`.
        """
        self._whole_images("layer methods")
        name = self.output_name if output is None else output_name(self._output_names, output)
        chosen = self.reader.class_index if class_index is None else _check_class(class_index)
        layer = self.layer(layer).name
        if len(activations) != len(images):
            raise OnnxplainError(f"{len(activations)} activations for {len(images)} images")
        session = self._edited_session("feed", layer)
        values = np.ascontiguousarray(activations, dtype=np.float32)
        raw = self._run_edited(session, name, self.to_tensor(images), {layer: values})
        return self._read(raw, name, chosen, images.shape[1:-1])

    def _read(self, raw: list[np.ndarray], name: str, class_index: int, size: tuple[int, ...]) -> ModelOutput:
        """Read raw output batches of output `name` as probabilities and masks, at the image's `size`."""
        output_batch = raw[0] if len(raw) == 1 else np.concatenate(raw)
        if self.resize_to is not None:
            # Back to the image's size before anything reads it: logits bilinearly, labels by nearest.
            spatial = (2, 3) if output_batch.ndim == 4 and not self._reader(name).channels_last else (1, 2)
            output_batch = resize_batch(output_batch, tuple(size), axes=spatial)  # type: ignore[arg-type]
        return self._reader(name).read(output_batch, class_index)

    def _chunks(self, *arrays: np.ndarray) -> Iterator[tuple[list[np.ndarray], int]]:
        """Yield (the arrays' chunks, number of real images in them) in forward-pass sizes."""
        # A model exported with a fixed batch takes exactly that many images, and on CUDA every new
        # input shape costs onnxruntime a new convolution search (seconds, each time the shape
        # comes back), so there the last chunk is padded to a full batch too.
        size = self.batch_size if self.input.batch is None else self.input.batch
        pad = self.input.batch is not None or self.device == "cuda"
        for start, stop in batches(len(arrays[0]), size):
            chunks = [array[start:stop] for array in arrays]
            keep = stop - start
            if pad and keep < size:
                chunks = [np.concatenate([chunk, np.repeat(chunk[-1:], size - keep, axis=0)]) for chunk in chunks]
            yield chunks, keep

    def run_tensor(self, tensor: np.ndarray, output: str | None = None) -> np.ndarray:
        """Run onnxruntime on a prepared input tensor (see `to_tensor`); return output `output`, raw.

        This is the model alone: the bare arm of speed benchmarks and the time recorded as
        inference.
        """
        name = output or self.output_name
        session = self._predicting_session()
        started = time.perf_counter()
        try:
            if self.device == "cuda":
                return self._run_bound(tensor, name)
            return session.run([name], {self.input.name: tensor})[0]
        except MemoryError:
            raise out_of_memory(len(tensor), "image") from None
        except Exception as error:  # onnxruntime raises its own untyped errors
            if "allocate" in str(error):  # onnxruntime's own out-of-memory message
                raise out_of_memory(len(tensor), "image") from error
            raise OnnxplainError(
                f"onnxruntime could not run the model on input shaped {tuple(tensor.shape)}: "
                f"{first_line(error)}; check the image size, channels and layout",
                parameters=("layout", "channels"),
            ) from error
        finally:
            self.inference_seconds += time.perf_counter() - started

    def _run_bound(self, tensor: np.ndarray, name: str) -> np.ndarray:
        """Run with I/O binding: the output is allocated on the device and copied back once."""
        session = self._predicting_session()
        binding = session.io_binding()
        binding.bind_cpu_input(self.input.name, tensor)
        binding.bind_output(name, self.device)
        session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    # --- inside the model -------------------------------------------------------------------

    @property
    def layers(self) -> list[Layer]:
        """The model's intermediate tensors, in graph order (see `onnxplain.layers`)."""
        if self._layers is None:
            self._layers = list_layers(self.path)
        return self._layers

    def layer(self, name: str | None = None) -> Layer:
        """The feature map called `name`, or the recommended one (the one the head reads) when omitted."""
        return default_layer(self.layers, self.output_name) if name is None else find_layer(self.layers, name)

    def activations(self, images: np.ndarray, layer: str) -> np.ndarray:
        """The activations of feature map `layer` for a batch of images in image space.

        Parameters
        ----------
        images : ndarray, shape (n, H, W, C)
            Images, as `predict` takes them.
        layer : str
            A feature map's name (see `layers`).

        Returns
        -------
        ndarray of float32, shape (n, channels, h, w)
        """
        self._whole_images("layer activations")
        name = self.layer(layer).name
        parts = self._run_edited(self._edited_session("expose", name), name, self.to_tensor(images))
        return np.concatenate(parts).astype(np.float32, copy=False)

    def _whole_images(self, what: str) -> None:
        if self.patch is not None:
            raise OnnxplainError(f"{what} need the whole image in one pass, and this model runs on patches of "
                                 f"{_size_text(self.patch)}; use a perturbation method", parameters=("method",))

    def _edited_session(self, edit: str, layer: str) -> ort.InferenceSession:
        """A session of the model with feature map `layer` exposed as an output or fed as an input, made once."""
        key = (edit, layer)
        if key not in self._layer_sessions:
            proto = onnx.load(str(self.path))  # with external weights, since the session is made from bytes
            edited = expose_layer(proto, layer) if edit == "expose" else feed_layer(proto, layer)
            no_cache = SessionSettings(threads=self.session_settings.threads,
                                       optimization=self.session_settings.optimization)
            self._layer_sessions[key], _ = create_session(edited.SerializeToString(), self.device, no_cache,
                                                          label=str(self.path))
        return self._layer_sessions[key]

    def _run_edited(self, session: ort.InferenceSession, name: str, tensor: np.ndarray,
                    extra: dict[str, np.ndarray] | None = None) -> list[np.ndarray]:
        """Output `name` of an edited session, in forward-pass chunks; `extra` inputs are chunked alike."""
        extra = extra or {}
        started = time.perf_counter()
        try:
            return [session.run([name], dict(zip([self.input.name, *extra], chunks, strict=True)))[0][:keep]
                    for chunks, keep in self._chunks(tensor, *extra.values())]
        finally:
            self.inference_seconds += time.perf_counter() - started

    # --- facts for records ------------------------------------------------------------------

    @property
    def activation(self) -> str:
        """How outputs become probabilities; ``'auto'`` is settled by the first run."""
        return self.reader.activation

    @property
    def channel_order(self) -> str:
        """The order of the channels the model receives, which `mean` and `std` follow (e.g. ``'B,G,R'``)."""
        if self.input.channels == 3:
            return ",".join(self.color.upper())
        return ",".join(f"c{i}" for i in range(self.input.channels)) if self.input.channels > 1 else "gray"

    @property
    def output_names(self) -> list[str]:
        """Names of the model's outputs, in order."""
        return list(self._output_names)

    @property
    def num_classes(self) -> int | None:
        """Channels of the explained output, known after the first run."""
        return self.reader.num_classes

    @property
    def sha256(self) -> str:
        """SHA-256 of the model file, computed once."""
        if self._sha256 is None:
            digest = hashlib.sha256()
            with open(self.path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            self._sha256 = digest.hexdigest()
        return self._sha256

    def describe(self) -> dict:
        """Return everything needed to load this model the same way again, as plain data."""
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "providers": self.providers,
            "input": {
                "name": self.input.name,
                "layout": self.input.layout,
                "channels": self.input.channels,
                "spatial": list(self.input.spatial),
                "batch": self.input.batch,
                "dtype": str(self.input.dtype),
            },
            "preprocessing": {
                "color": self.color,
                "channel_order": self.channel_order,
                "scale": self.scale,
                "mean": self.mean.tolist(),
                "std": self.std.tolist(),
                "formula": "(image * scale - mean) / std, image in [0, 1], mean and std in channel_order",
                "resize_to": list(self.resize_to) if self.resize_to else None,
            },
            "default_output": self.output_name,
            "default_class_index": self.reader.class_index,
            "activation": self.reader.activation,
            "threshold": self.reader.threshold_used,
            "batch_size": self.batch_size,
            "patches": None if self.patch is None else {"size": list(self.patch), "overlap": self.overlap,
                                                        "blending": "gaussian, sigma 1/8 of the patch"},
            "precision": self._precision_record,
            "session": self._session_record,
            "onnxruntime": ort.__version__,
        }

    def __repr__(self) -> str:
        return f"OnnxModel({str(self.path)!r}, device={self.device!r}, layout={self.input.layout!r})"


def load_model(model: OnnxModel | str | Path, **options) -> OnnxModel:
    """Return `model` if it is already an `OnnxModel`, else load it with `options`.

    Parameters
    ----------
    model : OnnxModel, str or Path
        A loaded model or the path of an ``.onnx`` file.
    **options
        Keyword arguments of `OnnxModel`, used only when loading.

    Returns
    -------
    OnnxModel
    """
    if isinstance(model, OnnxModel):
        return model
    return OnnxModel(model, **options)


def raw_runner(path: str | Path, *, device: str = "cpu") -> Callable[[np.ndarray], list[np.ndarray]]:
    """Load an ONNX file and return a function that runs it on one raw input tensor.

    For checks that need the model's outputs untouched (export parity, say); explanations use
    `OnnxModel`, which normalises images and interprets outputs.

    Parameters
    ----------
    path : str or Path
        The ``.onnx`` file (a single-input model).
    device : {'auto', 'cpu', 'cuda'}
        Execution provider.

    Returns
    -------
    callable
        ``run(tensor) -> list of ndarray``, every output of the model in order.
    """
    _check_choice("device", device, DEVICES)
    path = Path(path)
    load_graph(path)
    session, _ = create_session(path, device, SessionSettings())
    name = session.get_inputs()[0].name
    return lambda tensor: session.run(None, {name: tensor})


def _check_class(class_index: int) -> int:
    if class_index < 0:
        raise OnnxplainError(f"a class index is non-negative, got {class_index}", parameters=("class_index",))
    return int(class_index)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise OnnxplainError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _per_channel(name: str, value: float | Sequence[float], channels: int) -> np.ndarray:
    array = np.atleast_1d(np.asarray(value, dtype=np.float32))
    if array.ndim != 1 or len(array) not in (1, channels):
        raise OnnxplainError(f"{name} takes one value or {channels} (one per channel), got {array.tolist()}",
                             parameters=(name,))
    return array


def _size_text(size: Sequence[int | None]) -> str:
    """A size as people write it: width x height for images, the axes in order for volumes."""
    shown = ["any" if side is None else str(side) for side in size]
    return "x".join(shown[::-1] if len(shown) == 2 else shown)
