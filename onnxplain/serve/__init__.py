"""``onnxplain serve``: an interactive explorer in the browser (extra ``serve``: Starlette and uvicorn)."""
