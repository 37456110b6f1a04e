"""Streaming is real: opening a session reads no weights, a run reads each weight once, read-ahead stays within
its budget, and a medium model (the SD1.5 text encoder, 470 MB of fp32 weights) runs in much less memory."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxstream
from onnxstream.graph import GRAPH_FILE
from reference import onnxruntime_outputs, rel_l2


def chain_model(layers=12, width=256):
    """x -> (x + W_i) * V_i, repeated: 2 * layers weights of width*width floats (256 KB each)."""
    rng = np.random.default_rng(0)
    inits, nodes, prev = [], [], "x"
    for i in range(layers):
        for name in (f"w{i}", f"v{i}"):
            inits.append(numpy_helper.from_array((rng.standard_normal((width, width)) * 0.5 + 1).astype(np.float32), name))
        nodes += [helper.make_node("Add", [prev, f"w{i}"], [f"a{i}"]), helper.make_node("Mul", [f"a{i}", f"v{i}"], [f"m{i}"]),
                  helper.make_node("Tanh", [f"m{i}"], [f"t{i}"])]
        prev = f"t{i}"
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [width, width])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)


def read_chars() -> int:
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("rchar")).split()[1])


def test_open_reads_no_weights_and_run_reads_each_once(tmp_path):
    path = tmp_path / "chain.onnx"
    onnx.save(chain_model(), str(path))
    out = onnxstream.convert(path, tmp_path / "chain")
    graph_bytes = (out / GRAPH_FILE).stat().st_size
    total = sum(w.nbytes for w in onnxstream.Session(out).graph.weights)
    assert total == 24 * 256 * 256 * 4

    before = read_chars()
    session = onnxstream.Session(out, prefetch_bytes=600_000, resident_bytes=0)   # streaming: nothing kept
    opened = read_chars() - before
    assert session.bytes_read == 0
    assert opened < graph_bytes + 65536, f"opening read {opened} bytes; graph.json is {graph_bytes}"

    x = np.random.default_rng(1).standard_normal((256, 256)).astype(np.float32)
    got = session.run({"x": x})
    assert session.bytes_read == total                              # every weight exactly once
    assert session._reader.peak_held <= 600_000 + 256 * 256 * 4     # read-ahead within its budget (+1 tensor)
    want = onnxruntime_outputs(str(path), {"x": x})
    name = next(iter(want))
    assert rel_l2(got[name], want[name]) < 1e-5
    # The array cache (freed activations reused during the run) is numpy's allocator only during the run.
    handler_name = getattr(np, "_core", getattr(np, "core", None)).multiarray.get_handler_name
    assert handler_name(got[name]) == "onnxstream_array_cache"
    assert handler_name() != "onnxstream_array_cache"
    assert onnxstream._core.array_cache_bytes() == 0


def test_small_model_keeps_its_weights_resident_after_the_first_run(tmp_path):
    """Within the resident budget the second run reads no weight bytes and computes the same; with a budget below
    the model's weights every run streams them all again."""
    path = tmp_path / "chain.onnx"
    onnx.save(chain_model(), str(path))
    out = onnxstream.convert(path, tmp_path / "chain")
    x = np.random.default_rng(2).standard_normal((256, 256)).astype(np.float32)
    want = onnxruntime_outputs(str(path), {"x": x})
    name = next(iter(want))
    total = sum(w.nbytes for w in onnxstream.Session(out).graph.weights)
    for budget, second_run_reads in ((total, 0), (total - 1, total)):
        session = onnxstream.Session(out, resident_bytes=budget)
        first = session.run({"x": x})[name]
        read = session.bytes_read
        second = session.run({"x": x})[name]
        assert read == total and session.bytes_read - read == second_run_reads
        assert rel_l2(first, want[name]) < 1e-5 and np.array_equal(first, second)


PEAK_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    import onnxstream
    feeds = {k: v for k, v in np.load(sys.argv[2]).items()}
    session = onnxstream.Session(sys.argv[1])
    start = time.perf_counter()
    out = session.run(feeds)
    seconds = time.perf_counter() - start
    np.savez(sys.argv[3], **out)
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    kb = lambda k: int(status[k].split()[0])
    print(json.dumps({"peak_rss_mb": kb("VmHWM") / 1024, "seconds": seconds, "bytes_read": session.bytes_read}))
""")


def peak_run(model_dir, feeds, tmp_path) -> tuple[dict, dict]:
    """Run the model in a fresh process; return (outputs, {'peak_rss_mb', 'seconds', 'bytes_read'})."""
    np.savez(tmp_path / "feeds.npz", **feeds)
    r = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(model_dir), str(tmp_path / "feeds.npz"),
                        str(tmp_path / "out.npz")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return dict(np.load(tmp_path / "out.npz")), json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("weights", ["fp32", "fp16"])
def test_sd15_text_encoder_streams(weights, tmp_path, capsys):
    import modelzoo
    path = modelzoo.export("sd15_text_encoder", "dynamo")
    feeds = modelzoo.inputs("sd15_text_encoder")
    model = onnx.load(str(path))
    if weights == "fp16":
        from reference import round_weights_to_fp16
        round_weights_to_fp16(model)
    want = onnxruntime_outputs(model, feeds)
    del model
    out = onnxstream.convert(path, tmp_path / "te", weights=weights)
    model_mb = sum(w.nbytes for w in onnxstream.Session(out).graph.weights) / 2**20
    got, stats = peak_run(out, feeds, tmp_path)
    for key, value in want.items():
        assert rel_l2(got[key], value) < 1e-4, key
    with capsys.disabled():
        print(f"\nSD1.5 text encoder ({weights}): weights {model_mb:.0f} MB, peak RSS {stats['peak_rss_mb']:.0f} MB, "
              f"{stats['seconds']:.2f} s")
    assert stats["peak_rss_mb"] < 0.5 * model_mb if weights == "fp32" else stats["peak_rss_mb"] < model_mb


def embedding_model(vocab=4096, dim=256):
    """y = Gather(table, ids) + 1: a 4 MB token-embedding table of which a run needs a few rows."""
    table = numpy_helper.from_array(np.random.default_rng(0).standard_normal((vocab, dim)).astype(np.float32), "table")
    one = numpy_helper.from_array(np.ones((1,), np.float32), "one")
    nodes = [helper.make_node("Gather", ["table", "ids"], ["e"]), helper.make_node("Add", ["e", "one"], ["y"])]
    graph = helper.make_graph(nodes, "emb", [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [table, one])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)


def test_gather_table_reads_only_needed_rows(tmp_path):
    path = tmp_path / "emb.onnx"
    onnx.save(embedding_model(), str(path))
    out = onnxstream.convert(path, tmp_path / "emb")
    ids = np.array([[0, 5, 5, 4095, -1, 77, 1000], [3, 3, 3, 2, 1, 0, 4000]], np.int64)
    session = onnxstream.Session(out)
    got = session.run({"ids": ids})["y"]
    np.testing.assert_array_equal(got, onnxruntime_outputs(str(path), {"ids": ids})["y"])
    table = next(w for w in session.graph.weights if w.name == "table")
    assert table.rows_per_block > 0
    assert session.bytes_read <= 9 * table.rows_per_block * 256 * 4 < table.nbytes / 4  # 9 distinct blocks at most

    with open(out / "weights.bin", "r+b") as f:  # corrupt row 4000's block: reading it must fail, by name
        f.seek(table.offset + 4000 * 256 * 4)
        f.write(b"\xff\xff\xff\xff")
    with pytest.raises(ValueError, match="checksum mismatch in tensor 'table'"):
        onnxstream.Session(out).run({"ids": ids})


@pytest.mark.parametrize("name", ["tiny_unet", "bert_encoder", "small_cnn"])
@pytest.mark.parametrize("weights", ["fp32", "fp16"])
def test_column_blocks_match_onnxruntime(name, weights, tmp_path, monkeypatch):
    """Packed weights stored as column blocks (here made small so tiny models have them) give the same outputs,
    and a run reads every block exactly once."""
    import modelzoo
    from onnxstream import graph, packing
    from reference import round_weights_to_fp16
    monkeypatch.setattr(packing, "COLUMN_BLOCK_BYTES", 8192)
    path = modelzoo.export(name, "dynamo")
    feeds = modelzoo.inputs(name)
    model = onnx.load(str(path))
    if weights == "fp16":
        round_weights_to_fp16(model)
    want = onnxruntime_outputs(model, feeds)
    session = onnxstream.Session(onnxstream.convert(path, tmp_path / "m", weights=weights))
    blocked = [w for w in session.graph.weights if w.cols_per_block]
    assert blocked and all(len(w.block_hashes) == len(graph.column_blocks(w)) > 1 for w in blocked)
    got = session.run(feeds)
    assert session.bytes_read == sum(w.nbytes for w in session.graph.weights if not w.rows_per_block)
    for key, value in want.items():
        assert rel_l2(got[key], value) < 1e-4, key


def test_column_block_checksum_names_the_block(tmp_path, monkeypatch):
    from onnxstream import packing
    monkeypatch.setattr(packing, "COLUMN_BLOCK_BYTES", 65536)
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((512, 256)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 512])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    path = tmp_path / "mm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8), str(path))
    out = onnxstream.convert(path, tmp_path / "mm")
    weight = onnxstream.Session(out).graph.weights[0]
    assert weight.cols_per_block == 32
    with open(out / "weights.bin", "r+b") as f:  # corrupt a value in the third block (columns 64:96)
        f.seek(weight.offset + 2 * 32 * 512 * 4 + 100)
        f.write(b"\xff\xff\xff\xff")
    with pytest.raises(ValueError, match=r"checksum mismatch in tensor 'w\[64:96\]'"):
        onnxstream.Session(out).run({"x": np.ones((4, 512), np.float32)})


def test_resident_model_keeps_its_column_blocked_weights(tmp_path):
    """A weight stored in column blocks is kept too when the model is resident: the second run reads nothing
    (ddddocr's CRNN re-read its 33 MB blocked weight every run, 40% of its time) and matches onnxruntime."""
    import small_models
    out = small_models.convert("mlp", tmp_path / "mlp")
    session = onnxstream.Session(out)
    assert any(w.cols_per_block for w in session.graph.weights), "the mlp's first weight is in column blocks"
    feeds = small_models.feeds("mlp")
    first = session.run(feeds)
    read = session.bytes_read
    second = session.run(feeds)
    assert read == sum(w.nbytes for w in session.graph.weights) and session.bytes_read == read
    want = onnxruntime_outputs(str(tmp_path / "mlp.onnx"), feeds)
    for name in want:
        assert rel_l2(first[name], want[name]) < 1e-5 and np.array_equal(first[name], second[name])
