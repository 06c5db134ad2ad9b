"""Training the testnet U-Nets (2-D and 3-D) is reproducible from its seed."""

import dataclasses

import pytest
import torch
from onnxplain_torch.train_testnet import TESTNET, train
from onnxplain_torch.train_testnet3d import TESTNET3D


@pytest.mark.parametrize("task", [TESTNET, TESTNET3D], ids=["2-D", "3-D"])
def test_same_seed_same_weights(task):
    small = dataclasses.replace(task, held_out_count=2)
    runs = [train(seed=3, steps=2, batch_size=2, lr=1e-3, eval_every=2, log=[], task=small) for _ in range(2)]
    other = train(seed=4, steps=2, batch_size=2, lr=1e-3, eval_every=2, log=[], task=small)
    first, second = (run.state_dict() for run in runs)
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not all(torch.equal(first[name], value) for name, value in other.state_dict().items())
