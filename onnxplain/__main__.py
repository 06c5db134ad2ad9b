"""``python -m onnxplain``: the same as the ``onnxplain`` command."""

from onnxplain.cli import main

main(prog_name="onnxplain")
