import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # test helpers: modelzoo, conformance


def pytest_terminal_summary(terminalreporter):
    """The ONNX conformance count and the cases that do not pass, when test_conformance.py ran."""
    module = sys.modules.get("test_conformance")
    if module is not None and module.RESULTS:
        module.report(terminalreporter)
