"""Train the 3-D testnet U-Net reproducibly and write the model with its metrics log.

Run ``python -m onnxplain_torch.train_testnet3d --out onnxplain/data`` from the repository root. With
the 2-D testnet's trainer (`onnxplain_torch.train_testnet`: its loop, loss, Dice and auxiliary decider
head), it trains on an endless stream of fresh volumes, evaluates mean Dice on held-out volumes,
and writes ``testnet3d.onnx`` (input (N, 1, 48, 48, 48) in [0, 1], logits out) and
``testnet3d_training.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from onnxplain import testnet3d
from onnxplain_torch.export import export_module
from onnxplain_torch.train_testnet import WITHOUT_DECIDER, Task, train
from onnxplain_torch.unet import testnet3d_unet

HELD_OUT_SEED = 2_000_003  # never used for training data
TESTNET3D = Task(testnet3d.make_volume, testnet3d_unet, ("sphere", "cube"), HELD_OUT_SEED, 50, eval_batch=10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("onnxplain/data"), help="folder for the model and log")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    log: list = []
    started = time.perf_counter()
    model = train(seed=args.seed, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                  eval_every=args.eval_every, log=log, task=TESTNET3D)
    train_seconds = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out / "testnet3d.onnx"
    export_module(model, torch.from_numpy(testnet3d.make_volume(HELD_OUT_SEED, 0).image[None, None]), onnx_path)
    record = {"command": " ".join(["python -m onnxplain_torch.train_testnet3d",
                                   *(sys.argv[1:] if argv is None else argv)]),
              "seed": args.seed, "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
              "threads": args.threads, "held_out": {"seed": HELD_OUT_SEED, "count": 50},
              "without_decider": f"1 training volume in {WITHOUT_DECIDER}, with an empty segment",
              "final_held_out_dice": log[-1]["held_out_dice"], "train_seconds": round(train_seconds, 1),
              "parameters": sum(p.numel() for p in model.parameters()), "onnx_bytes": onnx_path.stat().st_size,
              "torch": torch.__version__, "python": platform.python_version(),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "log": log}
    (args.out / "testnet3d_training.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"held-out Dice {record['final_held_out_dice']:.4f} after {train_seconds:.0f} s -> {onnx_path}")


if __name__ == "__main__":
    main()
