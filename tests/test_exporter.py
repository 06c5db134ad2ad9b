"""The PyTorch exporter: parity with PyTorch, clear failures, and a round trip of the bundled model."""

import numpy as np
import pytest
import torch
from onnxplain_torch import plugin
from onnxplain_torch.export import ExportError, _parity, export_module
from onnxplain_torch.weights import WEIGHTS_PATH

from onnxplain import cli, data
from onnxplain.model import OnnxModel, raw_runner


def small_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 2, 1))


def test_parity_at_batch_one_and_eight(tmp_path):
    real = [torch.rand(1, 3, 24, 24)]
    report = export_module(small_net(), torch.rand(1, 3, 24, 24), tmp_path / "small.onnx", real_inputs=real)
    assert {"random, batch 1", "random, batch 8", "example", "real 0"} == set(report.max_abs_diff)
    assert max(report.max_abs_diff.values()) <= 1e-4
    model = OnnxModel(report.path, device="cpu")
    assert model.input.batch is None  # the batch axis is dynamic
    outputs = raw_runner(report.path)(np.random.default_rng(0).random((5, 3, 24, 24), dtype=np.float32))
    assert outputs[0].shape == (5, 2, 24, 24)


class NotExportable(torch.nn.Module):
    def forward(self, x):
        return torch.linalg.svd(x)[1]


def test_a_non_exportable_operation_gives_a_clear_error_and_no_file(tmp_path):
    with pytest.raises(ExportError, match=r"could not export NotExportable .*aten._linalg_svd"):
        export_module(NotExportable(), torch.rand(1, 1, 8, 8), tmp_path / "bad.onnx")
    assert list(tmp_path.iterdir()) == []


def test_outputs_that_differ_fail_the_export(tmp_path):
    path = export_module(small_net(), torch.rand(1, 3, 16, 16), tmp_path / "a.onnx").path
    other = small_net()
    with torch.no_grad():
        other[3].bias += 0.01  # the same network, computing something slightly different
    with pytest.raises(ExportError, match=r"disagree on the random, batch 1 input: max abs difference 0.01"):
        _parity(other.eval(), torch.rand(1, 3, 16, 16), str(path), [], 1e-4, 0)


def test_round_trip_of_the_bundled_model_from_its_weights(runner, tmp_path):
    out = tmp_path / "testnet.onnx"
    result = runner.invoke(cli.main, ["export", "torch", "--factory", "onnxplain_torch.unet:testnet_unet",
                                      "--weights", str(WEIGHTS_PATH), "--input-shape", "1,1,240,240",
                                      "--out", str(out), "--real-input",
                                      str(data.samples_dir() / "images" / data.sample_names()[0])])
    assert result.exit_code == 0, result.output
    assert "onnxruntime matches PyTorch within" in result.output
    images = np.stack([data.load_sample(i).image for i in range(4)])[:, None]
    ours = raw_runner(out)(images)[0]
    bundled = raw_runner(data.testnet_model_path())(images)[0]
    assert np.abs(ours - bundled).max() <= 1e-4


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_file(runner, tmp_path):
    scripted = torch.jit.script(small_net().eval())
    scripted.save(str(tmp_path / "net.pt"))
    result = runner.invoke(cli.main, ["export", "torch", "--torchscript", str(tmp_path / "net.pt"),
                                      "--input-shape", "1,3,20,20", "--out", str(tmp_path / "net.onnx")])
    assert result.exit_code == 0, result.output
    assert OnnxModel(tmp_path / "net.onnx", device="cpu").input.channels == 3


def test_weights_that_do_not_fit(runner, tmp_path):
    np.savez(tmp_path / "w.npz", nothing=np.zeros(3))
    result = runner.invoke(cli.main, ["export", "torch", "--factory", "onnxplain_torch.unet:testnet_unet",
                                      "--weights", str(tmp_path / "w.npz"), "--input-shape", "1,1,240,240",
                                      "--out", str(tmp_path / "x.onnx")])
    assert result.exit_code == 1 and "do not fit UNet" in result.output and "Traceback" not in result.output


def test_without_torch_the_command_says_how_to_install_it(runner, tmp_path, monkeypatch):
    real_import = plugin.importlib.import_module

    def no_torch(name, *args):
        if name == "torch":
            raise ModuleNotFoundError("No module named 'torch'")
        return real_import(name, *args)

    monkeypatch.setattr(plugin.importlib, "import_module", no_torch)
    result = runner.invoke(cli.main, ["export", "torch", "--torchscript", "x.pt", "--input-shape", "1,1,8,8",
                                      "--out", str(tmp_path / "x.onnx")])
    assert result.exit_code == 1
    assert 'install it with: pip install "onnxplain[torch]"' in result.output
