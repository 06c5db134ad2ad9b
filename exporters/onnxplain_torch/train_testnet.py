"""Train the testnet U-Net reproducibly and write the bundled model with its metrics log.

Run ``python -m onnxplain_torch.train_testnet --out onnxplain/data`` from the repository root. It trains
on an endless stream of freshly generated samples (so there is nothing to overfit), evaluates mean Dice
on 200 held-out samples, exports the ONNX model, and writes beside it::

    testnet.onnx                the model (dynamic batch, logits)
    testnet_training.json       parameters, per-evaluation metrics, wall time, versions

The weights are also written as ``exporters/onnxplain_torch/testnet_weights.npz`` so that
``onnxplain export torch`` can rebuild the ONNX file from them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from onnxplain import testnet
from onnxplain_torch.export import export_module
from onnxplain_torch.unet import UNet, testnet_unet
from onnxplain_torch.weights import WEIGHTS_PATH, save_npz

HELD_OUT_SEED = 1_000_003  # never used for training data
WITHOUT_DECIDER = 8  # one training image in this many has no right shape


def dice(prediction: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-image Dice of boolean masks shaped (N, *spatial); 1 when both are empty."""
    axes = tuple(range(1, prediction.ndim))
    intersection = np.logical_and(prediction, truth).sum(axis=axes)
    total = prediction.sum(axis=axes) + truth.sum(axis=axes)
    return np.where(total == 0, 1.0, 2.0 * intersection / np.maximum(total, 1))


@dataclass(frozen=True)
class Task:
    """What a testnet trainer trains on: its sample stream, its network, its decider shapes."""

    make_sample: Callable[[int, int], Any]  # (seed, index) -> a sample with image, segment, shapes, decider_shape
    make_model: Callable[[], UNet]
    deciders: tuple[str, str]
    held_out_seed: int
    held_out_count: int
    eval_batch: int = 25


TESTNET = Task(testnet.make_sample, testnet_unet, ("circle", "square"), HELD_OUT_SEED, 200)


def _batch(task: Task, seed: int, start: int, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training images, segments and which decider each shows (in `task.deciders` order).

    One image in `WITHOUT_DECIDER` has its decider shape erased and an empty segment: the decider
    must decide in both directions. Without these, a network learns "no circle, so the cross" and
    then ignores squares, which would make testnet's premise false for half of its samples.
    """
    images, segments, deciders = [], [], []
    for index in range(start, start + size):
        sample = task.make_sample(seed, index)
        image, segment = sample.image, sample.segment
        present = [sample.decider_shape == name for name in task.deciders]
        if index % WITHOUT_DECIDER == 0:
            image = np.where(sample.shapes["decider"], 0.0, image).astype(np.float32)
            segment = np.zeros_like(segment)
            present = [False, False]
        images.append(image)
        segments.append(segment)
        deciders.append(present)
    return (
        torch.from_numpy(np.stack(images)[:, None]),
        torch.from_numpy(np.stack(segments)[:, None].astype(np.float32)),
        torch.tensor(deciders, dtype=torch.float32),
    )


def _loss(logits: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    # BCE learns the pixels; soft Dice keeps the small foreground from being drowned by background.
    bce = nn.functional.binary_cross_entropy_with_logits(logits, segments)
    probs = torch.sigmoid(logits)
    axes = tuple(range(1, logits.ndim))  # 2-D images and 3-D volumes alike
    overlap = (probs * segments).sum(dim=axes)
    soft_dice = (2 * overlap + 1) / (probs.sum(dim=axes) + segments.sum(dim=axes) + 1)
    return bce + (1 - soft_dice).mean()


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, segments: np.ndarray, batch_size: int = 25) -> float:
    """Mean Dice of `model` (logits > 0) against boolean `segments`."""
    model.eval()
    logits = torch.cat([model(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
    model.train()
    return float(dice(logits[:, 0].numpy() > 0, segments).mean())


def train(
    *, seed: int, steps: int, batch_size: int, lr: float, eval_every: int, log: list, task: Task = TESTNET
) -> nn.Module:
    """Train the task's U-Net for `steps` steps and return it in eval mode.

    Everything random comes from `seed`: the initial weights and the training samples. Evaluations
    on the task's held-out samples are appended to `log`.
    """
    torch.manual_seed(seed)
    model = task.make_model()
    channels_last = len(model.spatial_axes) == 2  # faster 2-D convolutions on the CPU
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    # Training-only auxiliary head: telling from the pooled context which decider is present teaches
    # the context step what to carry far sooner than the segmentation loss alone (which sits for
    # thousands of steps at "segment both left shapes"). It is not part of the exported model.
    auxiliary = nn.Linear(2 * model.context[0].out_channels, 2)
    optimizer = torch.optim.AdamW([*model.parameters(), *auxiliary.parameters()], lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    held_out = [task.make_sample(task.held_out_seed, index) for index in range(task.held_out_count)]
    held_images = torch.from_numpy(np.stack([s.image for s in held_out])[:, None])
    held_segments = np.stack([s.segment for s in held_out])
    start = time.perf_counter()
    losses = []
    for step in range(1, steps + 1):
        images, segments, deciders = _batch(task, seed, (step - 1) * batch_size, batch_size)
        optimizer.zero_grad(set_to_none=True)
        logits, pooled = model.forward_with_context(images.to(memory_format=torch.channels_last) if channels_last
                                                    else images)
        loss = _loss(logits, segments) + nn.functional.binary_cross_entropy_with_logits(auxiliary(pooled), deciders)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % eval_every == 0 or step == steps:
            entry = {
                "step": step,
                "samples_seen": step * batch_size,
                "train_loss": float(np.mean(losses)),
                "held_out_dice": evaluate(model, held_images, held_segments, batch_size=task.eval_batch),
                "elapsed_s": round(time.perf_counter() - start, 1),
            }
            losses = []
            log.append(entry)
            print(json.dumps(entry), flush=True)
    return model.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("onnxplain/data"), help="folder for the model and log")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and of the training data")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    log: list = []
    started = time.perf_counter()
    model = train(
        seed=args.seed, steps=args.steps, batch_size=args.batch_size, lr=args.lr, eval_every=args.eval_every, log=log
    )
    train_seconds = time.perf_counter() - started
    model = model.to(memory_format=torch.contiguous_format)

    args.out.mkdir(parents=True, exist_ok=True)
    save_npz(model, WEIGHTS_PATH)
    onnx_path = args.out / "testnet.onnx"
    example = torch.from_numpy(testnet.make_sample(HELD_OUT_SEED, 0).image[None, None])
    export_module(model, example, onnx_path)
    record = {
        "command": " ".join(["python -m onnxplain_torch.train_testnet", *(sys.argv[1:] if argv is None else argv)]),
        "seed": args.seed,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "threads": args.threads,
        "held_out": {"seed": HELD_OUT_SEED, "count": 200},
        "without_decider": f"1 training image in {WITHOUT_DECIDER}, with an empty segment",
        "final_held_out_dice": log[-1]["held_out_dice"],
        "train_seconds": round(train_seconds, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
        "onnx_bytes": onnx_path.stat().st_size,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "log": log,
    }
    (args.out / "testnet_training.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"held-out Dice {record['final_held_out_dice']:.4f} after {math.ceil(train_seconds)} s -> {onnx_path}")


if __name__ == "__main__":
    main()
