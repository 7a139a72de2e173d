"""The import direction of docs/design.md: core <- kernels <- front (o3, nn, so2, ops, graph, ...) <- models, data <- training,
calculator <- cli.

A module may import its own layer and the layers below, never a higher one (lazy imports inside functions
count too: they are read from the source)."""

import ast
from pathlib import Path

import fastso3

ROOT = Path(fastso3.__file__).parent
RANK = {"core": 0, "kernels": 1, "o3": 2, "nn": 2, "so2": 2, "ops": 2, "graph": 2, "math": 2, "functional": 2,
        "irreps_tensor": 2, "so3": 2, "testing": 2, "util": 2, "io": 2, "jax": 2, "models": 3, "compat": 3, "data": 3, "calculator": 4,
        "training": 4, "compat_e3nn": 3, "cli": 5, "as_e3nn": 5, "__main__": 5, "__init__": 5}  # fmt: skip


def layer_of(relative: Path) -> str:
    return relative.parts[0].removesuffix(".py")


def imported_layers(path: Path):
    """The top-level fastso3 layers that ``path`` imports."""
    package = list(path.relative_to(ROOT).parent.parts)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:  # relative: resolved against this module's package
            full = package[: len(package) - node.level + 1] + (node.module.split(".") if node.module else [])
            yield from [full[0]] if full else [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fastso3"):
            parts = node.module.split(".")[1:]
            yield from [parts[0]] if parts else [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            yield from [alias.name.split(".")[1] for alias in node.names if alias.name.startswith("fastso3.")]


def test_lower_layers_never_import_higher_ones():
    violations = []
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT)
        own = RANK[layer_of(relative)]
        for layer in set(imported_layers(path)):
            if layer in RANK and RANK[layer] > own:
                violations.append(f"{relative} imports {layer}")
    assert not violations, violations


def test_jax_front_imports_neither_torch_nor_the_torch_ops():
    """Of the kernels, the jax front imports only the framework-neutral build loader (for ``backend='cpu'``)."""
    import subprocess
    import sys

    import pytest

    pytest.importorskip("jax")
    loader = ("fastso3.kernels", "fastso3.kernels.cpu", "fastso3.kernels.cpu.loader")
    code = ("import sys, jax, fastso3.jax; "
            f"bad = [m for m in sys.modules if m in ('torch', 'fastso3.o3') or m.startswith('fastso3.kernels') and m not in {loader}]; "
            "assert not bad, bad; "
            # without the torch front, Irreps.D_from_* on plain numbers are jax arrays
            "assert isinstance(fastso3.jax.Irreps('1o').D_from_angles(0.1, 0.2, 0.3), jax.Array)")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
