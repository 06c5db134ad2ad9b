"""``onnxplain serve``: the explorer in the browser."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from pathlib import Path

import click

from onnxplain.errors import OnnxplainError


@click.command()
@click.option("--models", "models", type=click.Path(path_type=Path), default=None,
              help="Folder of .onnx models to offer beside the bundled testnet model (read only).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but localhost exposes the models and results to that network.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=Path("onnxplain-serve"),
              show_default=True, help="Folder for uploads and results.")
@click.option("--max-model-mb", type=click.IntRange(1), default=200, show_default=True, help="Largest model upload.")
@click.option("--max-image-mb", type=click.IntRange(1), default=20, show_default=True, help="Largest image upload.")
@click.option("--workers", type=click.IntRange(1), default=2, show_default=True, help="Explanations run at once.")
def serve(models, host, port, data_dir, max_model_mb, max_image_mb, workers):
    """Start the interactive explorer: pick a model and image, say what to explain, see the map.

    Meant for a trusted network only: anyone who reaches the address can run models on this machine.
    """
    try:
        import uvicorn

        from onnxplain.serve.app import create_app
        from onnxplain.serve.store import Limits
    except ImportError as error:
        raise OnnxplainError(f"onnxplain serve needs the serve extra ({error.name} is missing); install it with "
                             "pip install 'onnxplain[serve]'") from None
    try:
        local = ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = host == "localhost"
    if not local:
        click.echo(f"Warning: listening on {host}: anyone who reaches it can upload models and run them here; "
                   "use it on a trusted network only", err=True)
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as error:
        raise OnnxplainError(f"cannot listen on {host}:{port} ({error.strerror}); give another --port or "
                             "--host") from None
    limits = Limits(model_bytes=max_model_mb * 2**20, image_bytes=max_image_mb * 2**20)
    app = create_app(data_dir, models=models, limits=limits, workers=workers)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))

    async def run() -> None:
        serving = asyncio.create_task(server.serve())
        while not server.started and not serving.done():
            await asyncio.sleep(0.05)
        if server.started:
            bound = server.servers[0].sockets[0].getsockname()[1]
            click.echo(f"onnxplain explorer on http://{host}:{bound}/ (Ctrl-C stops it)")
        await serving

    asyncio.run(run())
