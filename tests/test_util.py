"""fastso3.util (e3nn.util's names) and fastso3.set_optimization_defaults against e3nn 0.6.0."""

import copy
import pickle

import e3nn
import e3nn.util
import pytest
import torch
from e3nn.util import jit as e3nn_jit
from torch import fx

import fastso3
from fastso3 import util
from fastso3.util import jit
from fastso3.util.codegen import CodeGenMixin


@pytest.fixture
def restore_defaults():
    ours, theirs = fastso3.get_optimization_defaults(), e3nn.get_optimization_defaults()
    yield
    fastso3.set_optimization_defaults(**ours)
    e3nn.set_optimization_defaults(**theirs)


def test_optimization_defaults_follow_e3nn(restore_defaults):
    assert fastso3.get_optimization_defaults() == e3nn.get_optimization_defaults()
    assert util.get_optimization_defaults is fastso3.get_optimization_defaults is jit.get_optimization_defaults
    # the legacy jit_script_fx -> jit_mode mapping, step by step, on both libraries
    for change in [dict(jit_script_fx=False), dict(jit_script_fx=True), dict(jit_mode="inductor"), dict(jit_script_fx=True),
                   dict(jit_script_fx=False), dict(jit_mode="script"), dict(optimize_einsums=False, specialized_code=False)]:  # fmt: skip
        fastso3.set_optimization_defaults(**change)
        e3nn.set_optimization_defaults(**change)
        assert fastso3.get_optimization_defaults() == e3nn.get_optimization_defaults(), change
    returned = fastso3.get_optimization_defaults()
    returned["jit_mode"] = "nonsense"  # a copy
    assert fastso3.get_optimization_defaults()["jit_mode"] == "script"
    with pytest.raises(ValueError, match="Unknown optimization option"):
        fastso3.set_optimization_defaults(jit=True)
    with pytest.raises(ValueError, match="Invalid jit_mode"):
        fastso3.set_optimization_defaults(jit_mode="fast")
    fastso3.set_optimization_defaults(jit_script_fx=True)
    with jit.disable_e3nn_codegen():
        assert fastso3.get_optimization_defaults()["jit_mode"] == "eager"
    assert fastso3.get_optimization_defaults()["jit_script_fx"] is True  # restored


def test_default_type_helpers_and_prod(f64):
    assert util.explicit_default_types(None, None) == e3nn.util.explicit_default_types(None, None)
    assert util.explicit_default_types(torch.float32, "cpu") == (torch.float32, "cpu")
    assert util.torch_get_default_tensor_type() == e3nn.util.torch_get_default_tensor_type() == "torch.DoubleTensor"
    assert util.torch_get_default_device() == e3nn.util.torch_get_default_device()
    assert util.prod([2, 3, 4]) == e3nn.util.prod([2, 3, 4]) == 24 and util.prod([]) == 1


def test_compile_mode_is_recorded_and_returns_the_class():
    @jit.compile_mode("trace")
    class Traced(torch.nn.Module):
        def forward(self, x):
            return 2 * x

    assert jit.get_compile_mode(Traced()) == e3nn_jit.get_compile_mode(Traced()) == "trace"
    assert jit.get_compile_mode(torch.nn.Linear(2, 2)) is None
    assert jit.get_compile_mode(fx.symbolic_trace(torch.nn.ReLU())) == "script"
    with pytest.raises(ValueError, match="Invalid compile mode"):
        jit.compile_mode("fast")
    with pytest.raises(TypeError, match="torch.nn.Module"):
        jit.compile_mode("script")(object)


def test_compile_returns_unmarked_trees_and_refuses_torchscript():
    plain = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh())
    assert jit.compile(plain) is plain
    copied = jit.compile(plain, in_place=False)
    assert copied is not plain and torch.equal(copied[0].weight, plain[0].weight)

    @jit.compile_mode("script")
    class Scripted(torch.nn.Module):
        def forward(self, x):
            return x

    @jit.compile_mode("unsupported")
    class Unsupported(torch.nn.Module):
        pass

    parent = torch.nn.Sequential(torch.nn.Linear(3, 3), Scripted())
    with pytest.raises(NotImplementedError, match=r"Scripted \(submodule '1'\).*torch.compile"):
        jit.compile(parent)
    assert jit.compile(parent, recurse=False) is parent  # e3nn leaves the unmarked parent alone too
    with pytest.raises(NotImplementedError, match="does not support TorchScript"):
        jit.compile(torch.nn.Sequential(Unsupported()))
    for call in (lambda: jit.script(plain), lambda: jit.trace(plain, (torch.randn(1, 3),)),
                 lambda: jit.trace_module(plain, {"forward": (torch.randn(1, 3),)})):  # fmt: skip
        with pytest.raises(NotImplementedError, match="TorchScript"):
            call()


def test_get_tracing_inputs():
    lin = fastso3.o3.Linear("2x0e+1o", "1o").to(torch.float64)
    (inputs,) = jit.get_tracing_inputs(lin, n=1)
    (x,) = inputs["forward"]
    assert x.dtype == torch.float64 and x.shape[1:] == (5,) and 1 <= x.shape[0] <= 4
    lin(x)

    class Made(torch.nn.Module):
        def _make_tracing_inputs(self, n):
            return [{"forward": (torch.ones(2, dtype=torch.int64), torch.ones(2))} for _ in range(n)]

    made = jit.get_tracing_inputs(Made(), n=3, dtype=torch.float64)
    assert len(made) == 3 and made[0]["forward"][0].dtype == torch.int64 and made[0]["forward"][1].dtype == torch.float64
    with pytest.raises(ValueError, match="irreps_in"):
        jit.get_tracing_inputs(torch.nn.Linear(2, 2))


class _Doubler(CodeGenMixin, torch.nn.Module):
    def __init__(self):
        super().__init__()
        graph = fx.Graph()
        x = graph.placeholder("x")
        graph.output(graph.call_function(torch.mul, (x, 2.0)))
        self._codegen_register({"main": fx.GraphModule(torch.nn.Module(), graph)})

    def forward(self, x):
        return self.main(x)


def test_codegen_mixin_registers_graph_modules_and_pickles():
    module = _Doubler()
    x = torch.randn(3)
    assert module.__codegen__ == ["main"] and isinstance(module.main, fx.GraphModule)
    assert torch.equal(module(x), 2 * x)
    for clone in (copy.deepcopy(module), pickle.loads(pickle.dumps(module))):
        assert torch.equal(clone(x), 2 * x)
    with pytest.raises(TypeError, match="GraphModule"):
        CodeGenMixin._codegen_register(torch.nn.Module(), {"main": torch.nn.ReLU()})


def test_assert_normalized_accepts_normalized_and_catches_unnormalized():
    from fastso3.testing import assert_normalized

    def identity(x):
        return x

    identity.irreps_in = identity.irreps_out = o3_irreps = fastso3.o3.Irreps("2x0e + 1o + 2e")
    assert_normalized(identity, n_input=2000)
    assert_normalized(identity, normalization="norm", n_input=2000)

    def scaled(x):
        return 3.0 * x

    with pytest.raises(AssertionError, match="irrep 2x0e"):
        assert_normalized(scaled, irreps_in=o3_irreps, irreps_out=o3_irreps, n_input=2000)
    # a module: its weights are redrawn n_weight times (fastso3's Linear is normalized as e3nn's)
    assert_normalized(fastso3.o3.Linear("64x0e + 16x1o", "4x0e + 2x1o"), n_input=500, n_weight=20, atol=0.2)
    with pytest.raises(ValueError, match="normalization"):
        assert_normalized(identity, normalization="max")


@pytest.mark.compile
def test_assert_torch_compile(restore_defaults):
    from fastso3.testing import assert_torch_compile

    built_under = []

    class Doubler(torch.nn.Module):
        def __init__(self):
            super().__init__()
            built_under.append(fastso3.get_optimization_defaults()["jit_mode"])

        def forward(self, x):
            return 2 * x

    before = fastso3.get_optimization_defaults()["jit_mode"]
    compiled = assert_torch_compile("inductor", Doubler, torch.ones(3))
    assert built_under == ["inductor"] and fastso3.get_optimization_defaults()["jit_mode"] == before
    assert torch.equal(compiled(torch.ones(3)), 2 * torch.ones(3))


def test_float_tolerance_fixture_runs_both_dtypes(tmp_path):
    """e3nn's test suites import the fixture in their conftest: each test then runs in float32 and float64."""
    (tmp_path / "conftest.py").write_text("from fastso3.testing import float_tolerance  # noqa: F401\n")
    (tmp_path / "test_probe.py").write_text(
        "import torch\n"
        "def test_probe(float_tolerance):\n"
        "    dtype = torch.get_default_dtype()\n"
        "    assert float_tolerance.dtype == dtype and float_tolerance.dim() == 0\n"
        "    assert float_tolerance == torch.as_tensor({torch.float32: 1e-3, torch.float64: 1e-9}[dtype], dtype=dtype)\n"
    )
    class Passed:
        ids = []

        def pytest_runtest_logreport(self, report):
            if report.when == "call" and report.passed:
                self.ids.append(report.nodeid.split("[")[-1])

    before = torch.get_default_dtype()
    # in this process (a fresh interpreter would spend its time importing torch)
    code = pytest.main(["-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)], plugins=[Passed()])
    assert code == 0 and sorted(Passed.ids) == ["float32]", "float64]"] and torch.get_default_dtype() == before


def test_every_e3nn_name_mace_torch_imports_exists_in_fastso3():
    """mace-torch 0.3.16 imports these at module level; each must exist under the matching fastso3 module."""
    import ast
    import importlib
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("mace")
    # a peer `make setup` installs (--no-deps): its absence is a broken set-up, not a reason to skip
    assert spec is not None, "mace-torch is not installed: run make setup (pip install --no-deps mace-torch==0.3.16)"
    missing, seen = [], set()
    for path in Path(spec.origin).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "e3nn":
                module = "fastso3" + node.module[len("e3nn") :]
                for alias in node.names:
                    seen.add(f"{node.module}.{alias.name}")
                    target = importlib.import_module(module)
                    if not hasattr(target, alias.name) and importlib.util.find_spec(f"{module}.{alias.name}") is None:
                        missing.append(f"{module}.{alias.name} ({path.name})")
    assert {"e3nn.io.CartesianTensor", "e3nn.util.codegen.CodeGenMixin", "e3nn.util.jit.compile_mode",
            "e3nn.set_optimization_defaults"} <= seen  # fmt: skip
    assert not missing, missing


def test_assert_auto_jitable_refuses_torchscript():
    from fastso3.testing import assert_auto_jitable

    with pytest.raises(NotImplementedError, match="TorchScript"):
        assert_auto_jitable(fastso3.o3.ReducedTensorProducts("ij=ji", i="1o"))  # marked 'trace', as in e3nn
    with pytest.raises(ValueError, match="compile_mode"):
        assert_auto_jitable(torch.nn.Linear(2, 2))
