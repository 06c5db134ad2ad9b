"""Training the testnet U-Net is reproducible from its seed."""

import torch
from onnxplain_torch.train_testnet import train


def test_same_seed_same_weights():
    runs = [train(seed=3, steps=2, batch_size=2, lr=1e-3, eval_every=2, log=[], held_out_count=4) for _ in range(2)]
    other = train(seed=4, steps=2, batch_size=2, lr=1e-3, eval_every=2, log=[], held_out_count=4)
    first, second = (run.state_dict() for run in runs)
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not all(torch.equal(first[name], value) for name, value in other.state_dict().items())
