"""README.md lists exactly the ops of the registry (scripts/list-ops.py writes that list)."""
import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "list-ops.py"


def test_readme_op_list_matches_the_registry():
    spec = importlib.util.spec_from_file_location("list_ops", SCRIPT)
    list_ops = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(list_ops)
    text = list_ops.README.read_text()
    assert list_ops.updated(text) == text, "README.md's op list is out of date: run scripts/list-ops.py"
    from onnxstream.runtime.ops import OPS
    listed = text.split(list_ops.BEGIN)[1].split(list_ops.END)[0]
    assert all(f" {name}," in listed or f" {name}." in listed for name in OPS if not name.startswith("Fused"))
