"""ONNX node conformance: every case whose ops and dtypes onnxstream supports must pass (rtol 1e-3, atol 1e-5,
dtype and shape exact), except the cases listed in conformance.KNOWN_FAILING with their reasons (strict xfail).
The count over the population and each case that does not pass are printed at the end of the run."""
import pytest

import conformance
from conformance import KNOWN_FAILING, all_cases, direct_variant, run_case, runs

RESULTS: dict[str, str] = {}  # read by conftest.py's terminal summary

PARAMS = []
for case in all_cases():
    if not runs(case):
        continue
    for upgrade in (True, False) if direct_variant(case) else (True,):
        name = case.name + ("" if upgrade else "[direct]")
        marks = [pytest.mark.xfail(strict=True, reason=KNOWN_FAILING[name])] if name in KNOWN_FAILING else []
        PARAMS.append(pytest.param(case, upgrade, id=name, marks=marks))


def test_known_failing_cases_exist():
    names = {p.id for p in PARAMS}
    assert sorted(set(KNOWN_FAILING) - names) == []


@pytest.mark.parametrize("case, upgrade", PARAMS)
def test_node_case(case, upgrade, tmp_path):
    name = case.name + ("" if upgrade else "[direct]")
    try:
        run_case(case, tmp_path, upgrade)
    except Exception as e:
        RESULTS[name] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e) else ''}"
        raise
    RESULTS[name] = "pass"


def report(terminal):
    conformance.report(RESULTS, out=_Writer(terminal))


class _Writer:
    def __init__(self, terminal):
        self.terminal = terminal

    def write(self, text):
        self.terminal.write(text)
