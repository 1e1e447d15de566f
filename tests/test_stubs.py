"""python/mullama/_core.pyi must describe the extension exactly: same public names, every
method/property a stub class declares exists on the runtime class, mypy.stubtest agrees, and
StreamConfig's keywords follow the core's field table."""

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import mullama
from mullama import _core

STUB = Path(mullama.__file__).with_name("_core.pyi")


def _stub_tree() -> ast.Module:
    return ast.parse(STUB.read_text(), filename=str(STUB))


def _stub_top_level_names() -> set[str]:
    names = set()
    for node in _stub_tree().body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    # Private helpers of the stub itself (type aliases) are not part of the module.
    return {n for n in names if not n.startswith("_") or n == "__version__"}


def _runtime_names() -> set[str]:
    return {n for n in dir(_core) if not n.startswith("_")} | {"__version__"}


def _stub_classes() -> dict[str, ast.ClassDef]:
    return {n.name: n for n in _stub_tree().body if isinstance(n, ast.ClassDef)}


def test_every_runtime_name_is_in_the_stub():
    missing = _runtime_names() - _stub_top_level_names()
    assert not missing, f"in mullama._core but not in _core.pyi: {sorted(missing)}"


def test_every_stub_name_exists_at_runtime():
    extra = _stub_top_level_names() - _runtime_names()
    assert not extra, f"in _core.pyi but not in mullama._core: {sorted(extra)}"


def _declared_members(cls: ast.ClassDef) -> set[str]:
    """Methods and properties; bare annotated attributes are checked only on classes that are
    not exceptions (exception attributes are set per instance)."""
    members = set()
    for node in cls.body:
        if isinstance(node, ast.FunctionDef):
            members.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            members.add(node.target.id)
    return members


@pytest.mark.parametrize("name", sorted(_stub_classes()))
def test_stub_members_exist_on_the_runtime_class(name):
    stub = _stub_classes()[name]
    runtime = getattr(_core, name)
    assert inspect.isclass(runtime)
    is_exception = issubclass(runtime, BaseException)
    for member in _declared_members(stub):
        if is_exception and not any(
            isinstance(n, ast.FunctionDef) and n.name == member for n in stub.body
        ):
            continue
        assert hasattr(runtime, member), f"_core.{name}.{member} is in the stub only"


@pytest.mark.parametrize("name", sorted(_stub_classes()))
def test_runtime_public_members_are_in_the_stub(name):
    runtime = getattr(_core, name)
    if issubclass(runtime, BaseException):
        return
    declared = _declared_members(_stub_classes()[name])
    public = {m for m in vars(runtime) if not m.startswith("_")}
    assert public <= declared, f"undocumented on {name}: {sorted(public - declared)}"


def test_stub_base_classes_match_runtime():
    for name, stub in _stub_classes().items():
        runtime = getattr(_core, name)
        for base in stub.bases:
            if isinstance(base, ast.Name) and hasattr(_core, base.id):
                assert issubclass(runtime, getattr(_core, base.id)), (name, base.id)


def test_stubtest_finds_no_mismatch_with_the_runtime_module(tmp_path):
    """Signatures, defaults, finality and members: mypy's own stub checker, with the allowlist
    that gives a reason for each exception."""
    pytest.importorskip("mypy.stubtest", reason="mypy is in the test extra: pip install mypy")
    allowlist = Path(__file__).with_name("stubtest_allowlist.txt")
    # The stub imports only the standard library; without this mypy would also analyse
    # mullama/__init__.py and everything it imports (minutes instead of seconds).
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\nfollow_imports = silent\n[mypy-mullama]\nfollow_imports = skip\n")
    command = [sys.executable, "-m", "mypy.stubtest", "mullama._core"]
    command += ["--allowlist", str(allowlist), "--mypy-config-file", str(config)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr


def _stub_method(cls: str, name: str) -> ast.FunctionDef:
    for node in _stub_classes()[cls].body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise AssertionError(f"_core.pyi has no {cls}.{name}")


def _same_value(a: object, b: object) -> bool:
    # type() too, or False == 0 and 1.0 == 1 would pass.
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("method", ["__new__", "replace"])
def test_stub_stream_config_keywords_follow_the_field_table(method):
    node = _stub_method("StreamConfig", method)
    args = node.args
    assert [a.arg for a in args.posonlyargs + args.args] == [
        "cls" if method == "__new__" else "self"
    ]
    assert args.vararg is None and args.kwarg is None
    table = _core.StreamConfig.fields()
    assert [a.arg for a in args.kwonlyargs] == [name for name, _, _, _ in table]
    for arg, default, (name, annotation, table_default, _) in zip(
        args.kwonlyargs, args.kw_defaults, table, strict=True
    ):
        assert arg.annotation is not None and ast.unparse(arg.annotation) == annotation, name
        assert default is not None, name
        if method == "replace":
            # replace() keeps the current value, so the stub shows no default.
            assert isinstance(default, ast.Constant) and default.value is Ellipsis, name
        else:
            assert _same_value(ast.literal_eval(default), table_default), name
