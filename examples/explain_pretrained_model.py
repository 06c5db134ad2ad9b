"""Explain a real pretrained network end to end: get it, explain it, evaluate the map, look at it.

The network is PaddleOCR's PP-OCRv4 text detector (a DBNet that segments text), which the
``rapidocr-onnxruntime`` wheel on PyPI ships as an ONNX file. Any ONNX segmentation model works
the same way; models of other frameworks are exported first (``onnxplain export torch ...``).

Run:  python examples/explain_pretrained_model.py [--out DIR]
Then open DIR/summary.png: the image, the model's segment, the map and its isolines.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import onnxplain
from onnxplain.evaluation import EvaluationContext
from onnxplain.registry import plugins

WHEEL = "rapidocr-onnxruntime==1.4.4"
MEMBER = "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"


def fetch_model(cache: Path) -> Path:
    """Download the wheel that ships the model (once) and take the ONNX file out of it."""
    path = cache / "ppocrv4_det.onnx"
    if not path.exists():
        with tempfile.TemporaryDirectory() as folder:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", WHEEL, "-d", folder],
                           check=True)
            (wheel,) = Path(folder).glob("*.whl")
            cache.mkdir(parents=True, exist_ok=True)
            path.write_bytes(zipfile.ZipFile(wheel).read(MEMBER))
    return path


def text_image() -> np.ndarray:
    """Two lines of text on white, 128x384 (the detector takes sides that are multiples of 32)."""
    canvas = Image.new("RGB", (384, 128), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=28)
    draw.text((16, 20), "Why this mask?", fill="black", font=font)
    draw.text((16, 72), "Ask onnxplain.", fill="black", font=font)
    return np.asarray(canvas, dtype=np.float32) / 255


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("onnxplain-example"))
    parser.add_argument("--cache", type=Path, default=Path(".cache/real-models"))
    args = parser.parse_args()

    # PaddleOCR feeds BGR images normalised with mean 0.5 and std 0.5 (given in the model's own
    # channel order, B, G, R) and cuts its probability map at 0.3.
    model = onnxplain.OnnxModel(fetch_model(args.cache), color="bgr", mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5],
                                threshold=0.3)
    image = text_image()
    result = onnxplain.explain(model, image, method="rise", n_masks=500, seed=0)
    result.save(args.out)

    # How faithful is the map? Delete pixels most-relevant-first and least-relevant-first on a blurred
    # copy of the image; the gap between the two curves should be well above a random map's.
    context = EvaluationContext.from_attribution(result, model, seed=0)
    srg = plugins.create("metric", "srg").evaluate(context, result.map).values
    print(f"RISE on the text detector: {result.segment.mean():.1%} of the pixels segmented as text; "
          f"deletion gap (SRG) {srg['srg_gap']:.3f}, random maps {srg['srg_random_gap']:.3f} "
          f"± {srg['srg_random_gap_std']:.3f}")
    print(f"wrote {args.out}/summary.png")


if __name__ == "__main__":
    main()
