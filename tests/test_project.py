"""Facts about the project itself: README's commands are what CI runs, the core imports no framework."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_two_readme_commands_verbatim():
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    install, test = block.strip().splitlines()[:2]
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert install in ci and test in ci
    assert ci.index(install) < ci.index(test)


def test_the_core_never_imports_a_deep_learning_framework():
    frameworks = {"torch", "tensorflow", "keras", "jax"}
    for path in (ROOT / "onnxplain").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not {name.split(".")[0] for name in names} & frameworks, f"{path} imports {names}"


def test_only_the_runtime_modules_import_onnxruntime():
    importers = {path.name for path in (ROOT / "onnxplain").rglob("*.py")
                 if re.search(r"^\s*(import|from)\s+onnxruntime", path.read_text(), re.M)}
    assert importers == {"model.py", "session.py", "precision.py"}


def test_readme_shows_the_whole_occlusion_method_and_its_entry_point():
    readme = (ROOT / "README.md").read_text()
    source = (ROOT / "onnxplain" / "perturbation" / "occlusion.py").read_text()
    assert f"```python\n{source}```" in readme
    line = 'occlusion = "onnxplain.perturbation.occlusion:Occlusion"'
    assert line in readme and line in (ROOT / "pyproject.toml").read_text()
