import subprocess
import sys
import textwrap

import pytest

from benchmark.api import UnlearningMethod
from benchmark.registry import METHODS, Registry, RegistryError, _is_subclass_of


def test_import_benchmark_is_light():
    code = "import sys, benchmark, benchmark.registry; print(sorted(m for m in ('torch','diffusers','pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_builtin_methods_listed_without_loading():
    assert {"original", "retrain", "finetune", "neggrad", "erasediff", "erasediff-fixed"} <= set(METHODS.names())


def test_unknown_name_suggests_nearest():
    with pytest.raises(RegistryError, match=r"unknown method 'erasedif'.*did you mean 'erasediff'"):
        METHODS.get("erasedif")


def test_get_loads_lazy_target_and_validates():
    cls = METHODS.get("finetune")
    assert issubclass(cls, UnlearningMethod)
    reg: Registry[type] = Registry("methods", "unlearnbench.test-none", _is_subclass_of("benchmark.api:UnlearningMethod"))
    reg.register("bad", "benchmark.api:LabeledImages")
    with pytest.raises(RegistryError, match="invalid: expected a subclass"):
        reg.get("bad")


@pytest.mark.parametrize("name", ["Bad", "1x", "with space", ""])
def test_rejects_malformed_names(name):
    with pytest.raises(RegistryError, match="invalid"):
        Registry("methods", "x").register(name, "a:b")


def test_rejects_duplicates_and_bad_targets():
    reg = Registry("methods", "unlearnbench.test-none")
    reg.register("a", "pkg.mod:attr")
    with pytest.raises(RegistryError, match="already registered"):
        reg.register("a", "pkg.mod:other")
    with pytest.raises(RegistryError, match="must look like"):
        reg.register("b", "no_colon")
    reg.register("missing", "no_such_module_xyz:attr")
    with pytest.raises(RegistryError, match="cannot import"):
        reg.get("missing")


def test_entry_point_plugin_discovered(tmp_path, monkeypatch):
    """A distribution on sys.path declaring an entry point appears through importlib.metadata."""
    pkg = tmp_path / "myplugin_ub"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent("""
        from methods.finetune import Finetune

        class MyMethod(Finetune):
            name = "my-method"
    """))
    dist = tmp_path / "myplugin_ub-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugin-ub\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[unlearnbench.test-plugins]\nmy-method = myplugin_ub:MyMethod\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("methods", "unlearnbench.test-plugins", _is_subclass_of("benchmark.api:UnlearningMethod"))
    assert reg.names() == ["my-method"]
    assert "myplugin-ub" in reg.origin("my-method")
    assert reg.get("my-method").__name__ == "MyMethod"
