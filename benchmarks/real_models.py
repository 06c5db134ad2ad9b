"""Real pretrained segmentation networks, taken from PyPI wheels, as checked ONNX files for onnxplain.

Two networks are fetched into an ignored cache folder (``.cache/real-models/`` at the repository
root); nothing large goes into git:

``text``
    PaddleOCR's PP-OCRv4 text detector (DBNet), ``ch_PP-OCRv4_det_infer.onnx`` from the wheel
    ``rapidocr-onnxruntime==1.4.4``. Already ONNX: it is extracted unchanged and its SHA-256 checked.
``person``
    MediaPipe's selfie segmentation, ``selfie_segmentation.tflite`` from the wheel
    ``mediapipe==0.10.14`` (cp311, manylinux2014_x86_64). TFLite only, so `tflite_to_onnx` converts it
    here (opset 17), and nothing is written until a real TFLite interpreter (``ai-edge-litert``, else
    ``tflite-runtime``) agrees with onnxruntime to within `PARITY_TOLERANCE` on random inputs and real
    photos, and the mask on the astronaut covers her and not the background.

Each model's preprocessing for onnxplain is stated in `MODELS`, with where each value comes from;
`RealModel.onnxplain_options` gives it as keyword arguments of ``onnxplain.model.OnnxModel``.
`image` returns the real test images (scikit-image's bundled data, and a few lines of text rendered
with Pillow) at a size the model takes.

Run: python benchmarks/real_models.py [--cache DIR] [--no-parity]
     (needs pip and PyPI; the person model needs ``pip install tflite ai-edge-litert`` for the conversion
     and its parity check)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from tflite_convert import tflite_parity, tflite_to_onnx

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "real-models"
PARITY_TOLERANCE = 1e-4  # max abs difference between TFLite and onnxruntime outputs (probabilities)
CONVERTER_VERSION = "1"  # bump when tflite_to_onnx changes, so cached conversions are redone


@dataclass(frozen=True)
class RealModel:
    """A pretrained network shipped inside a PyPI wheel, and how to feed it.

    Preprocessing follows onnxplain's convention: an RGB image in [0, 1] becomes
    ``(image * scale - mean) / std``, then its channels are put in `color` order and its axes in
    `layout`. `mean` and `std` are written in the channel order the model receives.

    Parameters
    ----------
    name : str
        Key in `MODELS`.
    title : str
        What the network is, in words.
    file : str
        Name of the ONNX file in the cache folder.
    requirement : str
        The wheel that ships it, as ``pip download`` takes it.
    pip_options : tuple of str
        Extra ``pip download`` options (platform and Python version for a binary wheel).
    member : str
        Path of the model file inside the wheel.
    sha256 : str
        SHA-256 of that member: the bytes every check starts from.
    layout : {'NCHW', 'NHWC'}
        Axis order of the ONNX input.
    color : {'rgb', 'bgr'}
        Channel order of the ONNX input.
    scale, mean, std : float, tuple of float
        Normalisation of an image in [0, 1], see above.
    threshold : float
        Probability above which a pixel is segmented.
    size : tuple of int, optional
        Fixed input (height, width); None when any size that is a multiple of `multiple` runs.
    multiple : int
        Height and width must be multiples of this.
    images : tuple of str
        Names of its test images for `image`.
    source : str
        Where the values above come from.
    """

    name: str
    title: str
    file: str
    requirement: str
    member: str
    sha256: str
    layout: str
    color: str
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    threshold: float
    size: tuple[int, int] | None
    multiple: int
    images: tuple[str, ...]
    source: str
    pip_options: tuple[str, ...] = field(default=())

    def onnxplain_options(self) -> dict[str, Any]:
        """Keyword arguments of ``onnxplain.model.OnnxModel`` for this model.

        ``mean`` and ``std`` are in the channel order the model receives, as ``OnnxModel`` takes them.
        """
        return dict(layout=self.layout, color=self.color, scale=self.scale, mean=self.mean, std=self.std,
                    threshold=self.threshold)


MODELS: dict[str, RealModel] = {
    "text": RealModel(
        name="text",
        title="PaddleOCR PP-OCRv4 text detector (DBNet, MobileNetV3), probability map of text kernels",
        file="ppocrv4_det.onnx",
        requirement="rapidocr-onnxruntime==1.4.4",
        member="rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
        sha256="d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
        layout="NCHW",
        color="bgr",
        scale=1.0,
        mean=(0.5, 0.5, 0.5),  # B, G, R
        std=(0.5, 0.5, 0.5),  # B, G, R
        threshold=0.3,
        size=None,
        multiple=32,
        images=("page", "lines"),
        source=(
            "rapidocr_onnxruntime 1.4.4. Colour: utils/load_image.py:60-72 turns every image into BGR "
            "(cv2.COLOR_RGB2BGR for files and PIL images, GRAY2BGR for grey) and numpy arrays are taken "
            "as BGR already; ch_ppocr_det/utils.py DetPreProcess: scale 1/255 on 0-255 pixels (:24, "
            "so 1 on [0, 1] images), (img * scale - mean) / std (:40) with config.yaml Det mean "
            "[0.5, 0.5, 0.5] and std [0.5, 0.5, 0.5] (:27-28), applied to the BGR array, so in B, G, R "
            "order (all equal), HWC to CHW (:43) and a batch axis (:36): NCHW float32; resize so both "
            "sides are multiples of 32 (:46, :69-70; after scaling the short side up to "
            "limit_side_len 736, limit_type min, config.yaml:25-26). Output 'sigmoid_0.tmp_0' "
            "(N, 1, H, W) is made by a Sigmoid node (probabilities, same size as the input); "
            "DBPostProcess binarises it at pred > thresh (utils.py:114) with thresh 0.3 (config.yaml:30)."
        ),
    ),
    "person": RealModel(
        name="person",
        title="MediaPipe selfie segmentation (general, 256x256), probability that a pixel is a person",
        file="selfie_segmentation.onnx",
        requirement="mediapipe==0.10.14",
        pip_options=("--python-version", "3.11", "--only-binary=:all:", "--platform", "manylinux2014_x86_64"),
        member="mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
        sha256="9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
        layout="NHWC",
        color="rgb",
        scale=1.0,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        threshold=0.5,
        size=(256, 256),
        multiple=1,
        images=("astronaut",),
        source=(
            "mediapipe 0.10.14. mediapipe/python/solutions/selfie_segmentation.py:38 and :65: the "
            "graph takes an RGB image. modules/selfie_segmentation/selfie_segmentation_cpu.binarypb, "
            "ImageToTensorCalculatorOptions of model 0 (bytes 0x7c-0x91): output_tensor_width 256, "
            "height 256, keep_aspect_ratio false (a plain stretch), output_tensor_float_range "
            "min 0.0 max 1.0, border_mode ZERO; model 1 (landscape) is 256x144. The TFLite input "
            "'input_1' is NHWC 1x256x256x3 float32; the output 'activation_10' 1x256x256x1 is made by "
            "LOGISTIC (probabilities), and TensorsToSegmentationCalculator's activation is NONE (bytes 0x276-0x27f). "
            "The graph has no threshold: 0.5 is the even cut of that probability."
        ),
    ),
}


# --------------------------------------------------------------------------------------------------
# Fetching


def fetch(name: str, cache: Path = CACHE, *, check_parity: bool = True) -> Path:
    """Return the path of a real model's ONNX file, fetching and checking it first if needed.

    Idempotent: a cached file that still passes `is_valid` is returned untouched.

    Parameters
    ----------
    name : {'text', 'person'}
        Key in `MODELS`.
    cache : Path
        Folder of the cached ONNX files.
    check_parity : bool
        For the converted person model: compare it with a TFLite interpreter before writing it
        (needs ``ai-edge-litert`` or ``tflite-runtime``). Turning it off is for machines where no
        interpreter installs; the file then records that parity was not checked.

    Returns
    -------
    Path
        The ONNX file.
    """
    model = MODELS[name]
    path = Path(cache) / model.file
    if is_valid(name, path, parity_checked=check_parity):
        return path
    source = _wheel_member(model)
    if name == "text":
        onnx_model = onnx.load_from_string(source)
    else:
        onnx_model = tflite_to_onnx(source)
        parity = tflite_parity(source, onnx_model, _parity_inputs()) if check_parity else None
        if parity is not None and parity > PARITY_TOLERANCE:
            raise RuntimeError(f"{name}: ONNX and TFLite outputs differ by {parity:.2e} > {PARITY_TOLERANCE:g}")
        _set_metadata(onnx_model, source_sha256=model.sha256, converter=CONVERTER_VERSION,
                      parity_max_abs_diff="not checked" if parity is None else f"{parity:.3e}")
    onnx.checker.check_model(onnx_model, full_check=True)
    data = source if name == "text" else onnx_model.SerializeToString()
    _check_segments(name, data)
    # Written whole or not at all: a temporary file in the same folder, renamed at the end.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{model.file}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def is_valid(name: str, path: Path, *, parity_checked: bool = False) -> bool:
    """Whether `path` holds the checked ONNX file of model `name`.

    The text model must be the wheel's bytes (SHA-256); the person model must be a conversion of the
    pinned TFLite file by this converter version, pass ``onnx.checker``, and with `parity_checked`,
    have passed the TFLite parity check.
    """
    model = MODELS[name]
    if not path.is_file():
        return False
    if name == "text":
        return hashlib.sha256(path.read_bytes()).hexdigest() == model.sha256
    try:
        onnx_model = onnx.load(path)
        onnx.checker.check_model(onnx_model)
    except Exception:  # a truncated or foreign file: fetch again
        return False
    meta = {p.key: p.value for p in onnx_model.metadata_props}
    checked = not parity_checked or meta.get("parity_max_abs_diff", "not checked") != "not checked"
    return meta.get("source_sha256") == model.sha256 and meta.get("converter") == CONVERTER_VERSION and checked


def _wheel_member(model: RealModel) -> bytes:
    """Download the model's wheel with pip (no dependencies) and return the member's bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
                   *model.pip_options, model.requirement, "-d", tmp]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"pip download {model.requirement} failed:\n{done.stderr.strip()}")
        wheels = sorted(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"pip download {model.requirement} gave {len(wheels)} wheels, expected 1")
        with zipfile.ZipFile(wheels[0]) as wheel:
            data = wheel.read(model.member)
    digest = hashlib.sha256(data).hexdigest()
    if digest != model.sha256:
        raise RuntimeError(f"{model.member} in {wheels[0].name} has SHA-256 {digest}, expected {model.sha256}")
    return data


def _set_metadata(onnx_model: onnx.ModelProto, **values: str) -> None:
    del onnx_model.metadata_props[:]
    for key, value in values.items():
        onnx_model.metadata_props.add(key=key, value=value)


# --------------------------------------------------------------------------------------------------
# Test images


def image(name: str) -> np.ndarray:
    """A real test image, float32 (H, W, 3) RGB in [0, 1], at a size its model takes.

    Parameters
    ----------
    name : {'page', 'lines', 'astronaut', 'coffee', 'chelsea'}
        ``'page'``: scikit-image's photographed page of text (grey, 191x384), its last row repeated
        to 192x384 (multiples of 32). ``'lines'``: five lines of black text rendered with Pillow's
        bundled font on white, 256x512. ``'astronaut'``: scikit-image's portrait of Eileen
        Collins, stretched to 256x256 as MediaPipe does. ``'coffee'`` (a cup of coffee) and
        ``'chelsea'`` (a cat): no person, 256x256.

    Returns
    -------
    numpy.ndarray
    """
    import skimage.data
    import skimage.transform

    if name == "page":
        page = np.pad(skimage.data.page(), ((0, 1), (0, 0)), mode="edge")
        return np.repeat(page[:, :, None], 3, axis=2).astype(np.float32) / 255
    if name == "lines":
        return _render_lines()
    if name in ("astronaut", "coffee", "chelsea"):
        photo = getattr(skimage.data, name)()
        # keep_aspect_ratio false in MediaPipe's graph: the whole image is stretched to 256x256.
        return skimage.transform.resize(photo, (256, 256), order=1, anti_aliasing=True).astype(np.float32)
    raise KeyError(f"unknown image {name!r}; known: page, lines, astronaut, coffee, chelsea")


LINES = ("Explaining segmentation networks", "through ONNX and onnxruntime:", "which pixels made the mask?",
         "Occlusion, RISE, LIME, SHAP", "0123456789 ABCDEFGHIJ")
LINE_TOP, LINE_STEP, LINE_LEFT, FONT_SIZE = 16, 48, 16, 28


def _render_lines() -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    canvas = Image.new("RGB", (512, 256), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=FONT_SIZE)
    for i, text in enumerate(LINES):
        draw.text((LINE_LEFT, LINE_TOP + i * LINE_STEP), text, fill="black", font=font)
    return np.asarray(canvas, dtype=np.float32) / 255


def _line_boxes() -> list[tuple[int, int, int, int]]:
    """(top, bottom, left, right) of each rendered line's ink, for the text model's check."""
    from PIL import Image, ImageDraw, ImageFont

    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    font = ImageFont.load_default(size=FONT_SIZE)
    boxes = []
    for i, text in enumerate(LINES):
        left, top, right, bottom = draw.textbbox((LINE_LEFT, LINE_TOP + i * LINE_STEP), text, font=font)
        boxes.append((top, bottom, left, right))
    return boxes


# --------------------------------------------------------------------------------------------------
# Running


def to_input(name: str, images: np.ndarray) -> np.ndarray:
    """Turn RGB images (N, H, W, 3) in [0, 1] into model `name`'s input tensor."""
    model = MODELS[name]
    x = images[..., ::-1] if model.color == "bgr" else images  # first, as mean and std are in the model's order
    x = (x * model.scale - np.asarray(model.mean, np.float32)) / np.asarray(model.std, np.float32)
    if model.layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=np.float32)


def predict(name: str, images: np.ndarray, model_file: Path | bytes | None = None) -> np.ndarray:
    """Probability maps (N, H, W) of model `name` on RGB images (N, H, W, 3) in [0, 1], on the CPU."""
    import onnxruntime as ort

    source = model_file if model_file is not None else fetch(name)
    session = ort.InferenceSession(source if isinstance(source, bytes) else str(source),
                                   providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: to_input(name, images)})
    return out[:, 0] if MODELS[name].layout == "NCHW" else out[..., 0]


def _check_segments(name: str, model_file: bytes) -> None:
    """Refuse a model whose thresholded output is not the expected segment on a real image."""
    model = MODELS[name]
    if name == "text":
        mask = predict(name, image("lines")[None], model_file)[0] > model.threshold
        ink = np.zeros_like(mask)
        for top, bottom, left, right in _line_boxes():
            ink[top:bottom, left:right] = True
        inside, outside = mask[ink].mean(), mask[~ink].mean()
        if not (inside > 0.3 and outside < 0.02):
            raise RuntimeError(f"text: {inside:.0%} of the text lines and {outside:.0%} of the rest segmented")
    else:
        prob = predict(name, image("astronaut")[None], model_file)[0]
        body, background = _regions_mean(prob, PERSON_BODY), _regions_mean(prob, PERSON_BACKGROUND)
        if not (body > 0.9 and background < 0.1):
            raise RuntimeError(f"person: mean probability {body:.2f} on the body, {background:.2f} on the background")


# Regions of the 256x256 astronaut: her face and chest (person), and the flag at the top left and the
# wall at the top right (background); checked by eye on the mask drawn over the photo.
PERSON_BODY = (slice(40, 80), slice(100, 140)), (slice(130, 200), slice(80, 180))
PERSON_BACKGROUND = (slice(0, 40), slice(0, 50)), (slice(0, 30), slice(190, 256))


def _regions_mean(prob: np.ndarray, regions: Sequence[tuple[slice, slice]]) -> float:
    return float(np.concatenate([prob[r].ravel() for r in regions]).mean())


def _parity_inputs() -> np.ndarray:
    """Random images and real photos, (N, 256, 256, 3) float32 in [0, 1]."""
    rng = np.random.default_rng(0)
    noise = rng.random((3, 256, 256, 3), dtype=np.float32)
    photos = [image(name) for name in ("astronaut", "coffee", "chelsea")]
    return np.concatenate([noise, np.stack(photos)])


# --------------------------------------------------------------------------------------------------
# Command line


def main(argv: Sequence[str] | None = None) -> int:
    """Fetch and check both models, printing one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=CACHE, help="cache folder (default: %(default)s)")
    parser.add_argument("--no-parity", action="store_true", help="skip the TFLite parity check (no interpreter)")
    args = parser.parse_args(argv)
    import onnxruntime as ort

    for name, model in MODELS.items():
        path = fetch(name, args.cache, check_parity=not args.no_parity)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (inp,), (out,) = session.get_inputs(), session.get_outputs()
        meta = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
        parity = f"parity {meta['parity_max_abs_diff']}" if "parity_max_abs_diff" in meta else "wheel's own ONNX"
        shares = []
        for image_name in model.images:
            prob = predict(name, image(image_name)[None], path)[0]
            shares.append(f"{image_name} {np.mean(prob > model.threshold):.1%}")
        print(f"{name}: {path} {path.stat().st_size / 2**20:.1f} MiB, {inp.name} {inp.shape} -> {out.name} "
              f"{out.shape}, {parity}, segmented: {', '.join(shares)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
