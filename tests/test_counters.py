"""The runtime's counting hooks (off by default): kernel work counts and thread-pool statistics.

Each case runs in a fresh interpreter with the environment variable set, since both hooks read it once. The
result of the counted matmul is checked against numpy, so counting never changes what the kernels compute.
"""
import json
import subprocess
import sys
from pathlib import Path

from child_env import child_env

CHILD = """
import json, numpy as np
from onnxstream import _core
_core.set_num_threads(4)
rng = np.random.default_rng(0)
B, M, K, N = 2, 67, 45, 37  # partial tiles in every direction
a = rng.standard_normal((B, M, K)).astype(np.float32)
w = rng.standard_normal((B, K, N)).astype(np.float32)
y = np.empty((B, M, N), np.float32)
_core.reset_kernel_counts(); _core.reset_pool_stats()
_core.matmul(a, w, None, y)
err = float(np.abs(y - np.matmul(a.astype(np.float64), w)).max())
counts, pool = _core.kernel_counts(), _core.pool_stats()
# group_norm: one parallel_for over N * groups = 64 groups of 4 x 4096 elements (grain 1)
x = rng.standard_normal((2, 128, 4096)).astype(np.float32)
g = np.empty_like(x)
_core.reset_pool_stats()
_core.group_norm(x, np.ones(128, np.float32), np.zeros(128, np.float32), 32, 1e-5, g)
xg = x.reshape(2, 32, -1).astype(np.float64)
ref = ((xg - xg.mean(-1, keepdims=True)) / np.sqrt(xg.var(-1, keepdims=True) + 1e-5)).reshape(x.shape)
print(json.dumps({"err": err, "counts": counts, "pool": pool, "gn_err": float(np.abs(g - ref).max()),
                  "gn_pool": _core.pool_stats()}))
"""


def run_child(**env):
    r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=child_env(**env),
                       check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_kernel_counts_are_the_matmul_flop():
    out = run_child(ONNXSTREAM_COUNT_KERNELS="1")
    assert out["err"] < 1e-4
    f32w = out["counts"]["f32w"]
    assert f32w["flop"] == 2 * 2 * 67 * 45 * 37  # every (m, n, k) exactly once, edge tiles included
    assert f32w["tile_cols"] > 0 and f32w["calls"] > 0


def test_counts_stay_zero_when_off():
    out = run_child(ONNXSTREAM_COUNT_KERNELS="0", ONNXSTREAM_POOL_STATS="0")
    assert out["err"] < 1e-4
    assert all(c["calls"] == 0 for c in out["counts"].values())
    assert out["pool"]["jobs"] == 0 and all(w["chunks"] == 0 for w in out["pool"]["workers"])


def test_pool_stats_cover_every_item_once():
    out = run_child(ONNXSTREAM_POOL_STATS="1")
    assert out["gn_err"] < 1e-4
    pool = out["gn_pool"]
    assert pool["threads"] == 4 and len(pool["workers"]) == 4
    assert pool["jobs"] == 1 and pool["short_jobs"] == 0 and pool["inline_jobs"] == 0
    assert sum(w["items"] for w in pool["workers"]) == 64  # every group once, whichever worker ran it
    assert sum(w["chunks"] for w in pool["workers"]) == 16  # about 4 chunks per thread: 64 / 16 = 4 groups each
    assert all(w["cpu_ns"] >= 0 for w in pool["workers"]) and pool["job_wall_ns"] > 0
