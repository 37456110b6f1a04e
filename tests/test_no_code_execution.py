"""No file onnxstream reads can make it run code: no pickle, eval or exec anywhere in the package, numpy loads
without pickles, no attribute named by a file; the pipeline converter loads safetensors only and refuses pickle
checkpoints unless allowed (--allow-pickle), saying why."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from test_pipeline import diffusers_dir, onnx_model  # noqa: F401  (fixtures: the tiny pipeline)

PACKAGE = Path(__file__).resolve().parent.parent / "python" / "onnxstream"
# getattr/setattr whose name is not a literal, each reviewed: the names come from a constant tuple (latents_file,
# frame/cli, export_tiny_vae's "decode"/"encode") or from torch's named_children() of a module the converter built
# (export_sdxl), never from a file.
DYNAMIC_ATTRS = {("pipelines/latents_file.py", "getattr"), ("pipelines/latents_file.py", "setattr"),
                 ("frame/cli.py", "getattr"), ("pipelines/export_sdxl.py", "setattr"),
                 ("pipelines/export_tiny_vae.py", "getattr")}


def calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            yield node, f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def test_package_source_has_no_way_to_run_code_from_a_file():
    dynamic = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(PACKAGE))
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                assert not {"pickle", "marshal", "shelve", "dill", "cloudpickle"} & set(names), f"{rel}: {names}"
        for node, name in calls(tree):
            bare = isinstance(node.func, ast.Name)  # (a torch module's .eval() is no eval)
            assert not (bare and name in ("eval", "exec", "compile", "__import__")) and name != "import_module", \
                f"{rel}:{node.lineno}: {name}"
            if name == "load" and isinstance(node.func, ast.Attribute) and getattr(node.func.value, "id", "") == "np":
                kw = {k.arg: k.value for k in node.keywords}
                assert isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value is False, \
                    f"{rel}:{node.lineno}: np.load without allow_pickle=False"
            if name in ("getattr", "setattr", "delattr") and not isinstance(node.args[1], ast.Constant):
                dynamic.add((rel, name))
    assert dynamic == DYNAMIC_ATTRS


def test_latents_file_cannot_name_attributes(tmp_path):
    from onnxstream.pipelines.latents_file import FORMAT, load_latents
    params = dict(prompt="p", negative_prompt=None, steps=4, guidance=7.5, sampler="euler", seed=1, width=64,
                  height=64, strength=0.8, num=1, img2img=False)
    meta = dict(format=FORMAT, done=1, image_index=0, images=0, params=params, rng=None,
                scheduler={"__class__": 1})
    np.savez(tmp_path / "s.npz", latents=np.zeros((1, 4, 8, 8), np.float32),
             meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    with pytest.raises(ValueError, match=r"is damaged \(scheduler\)"):
        load_latents(tmp_path / "s.npz")
    np.savez(tmp_path / "p.npz", latents=np.zeros((1, 4, 8, 8), np.float32), meta=np.array([object()]))
    with pytest.raises(ValueError, match="is not a latents file"):   # an object array: numpy refuses the pickle
        load_latents(tmp_path / "p.npz")


def test_pickle_checkpoints_are_refused_unless_allowed(diffusers_dir, onnx_model, tmp_path):  # noqa: F811
    import onnxruntime as ort
    from diffusers import StableDiffusionPipeline
    from onnxstream.pipelines.convert_pipeline import convert_pipeline
    pickled = tmp_path / "pickled"
    StableDiffusionPipeline.from_pretrained(diffusers_dir).save_pretrained(pickled, safe_serialization=False)
    for part in pickled.iterdir():  # transformers now writes safetensors whatever it is asked: a pickle by hand
        if part.is_dir() and list(part.glob("*.safetensors")):
            import safetensors.torch
            import torch
            for st in part.glob("*.safetensors"):
                torch.save(safetensors.torch.load_file(st), part / "pytorch_model.bin")
                st.unlink()
    assert not list(pickled.rglob("*.safetensors")) and list(pickled.rglob("*.bin"))
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"text_encoder/pytorch_model\.bin is a pickle checkpoint: loading one can "
                                         r"run any code.*safetensors only.*--allow-pickle"):
        convert_pipeline(pickled, out, onnx_only=True)
    r = subprocess.run([sys.executable, "-m", "onnxstream", "convert", pickled, out, "--onnx-only"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "pickle checkpoint" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pickled"]  # nothing written
    convert_pipeline(pickled, out, onnx_only=True, allow_pickle=True)
    ids = {"input_ids": np.array([list(range(49406, 49408)) + [320] * 75], np.int64)}
    got = ort.InferenceSession(str(out / "text_encoder" / "model.onnx")).run(None, ids)[0]
    want = ort.InferenceSession(str(onnx_model / "text_encoder" / "model.onnx")).run(None, ids)[0]
    np.testing.assert_array_equal(got, want)  # the same weights as the safetensors export
