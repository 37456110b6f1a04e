"""ONNX node conformance: every case of every supported op passes (rtol 1e-3, atol 1e-5)."""
from collections import Counter

import pytest

from conformance import all_cases, run_case, skip_reason

# Cases of supported ops known to fail. Must stay empty: an op is supported only when all its cases pass.
KNOWN_FAILING: list[str] = []

CASES = [c for c in all_cases() if skip_reason(c) is None]


def test_conformance_summary():
    reasons = Counter(skip_reason(c) for c in all_cases())
    applicable = reasons.pop(None, 0)
    ops = sorted({n.op_type for c in CASES for n in c.model.graph.node})
    print(f"\nONNX node conformance: {applicable} of {len(all_cases())} cases apply to onnxstream "
          f"({len(ops)} ops); skipped by reason:")
    for reason, count in reasons.most_common():
        print(f"  {count:5d}  {reason}")
    assert KNOWN_FAILING == []
    assert applicable > 0


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_node_case(case, tmp_path):
    run_case(case, tmp_path)
