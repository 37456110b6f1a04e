"""Whole models vs onnxruntime: tiny SD1.5-architecture networks, a small CNN and a BERT encoder, each exported
by both torch.onnx exporters, converted with fp32 and fp16 weights."""
import onnx
import pytest

import modelzoo
import onnxstream
from reference import onnxruntime_outputs, rel_l2, round_weights_to_fp16

MODELS = ["tiny_unet", "tiny_vae_decoder", "tiny_vae_encoder", "tiny_text_encoder", "small_cnn", "bert_encoder"]
TOLERANCE = 1e-4


@pytest.mark.parametrize("exporter", modelzoo.EXPORTERS)
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("weights", ["fp32", "fp16"])
def test_model_matches_onnxruntime(name, exporter, weights, tmp_path):
    path = modelzoo.export(name, exporter)
    feeds = modelzoo.inputs(name)
    model = onnx.load(str(path))
    if weights == "fp16":
        round_weights_to_fp16(model)
    expected = onnxruntime_outputs(model, feeds)

    out_dir = onnxstream.convert(path, tmp_path / "model", weights=weights)
    got = onnxstream.Session(out_dir).run(feeds)

    assert set(got) == set(expected)
    for key, want in expected.items():
        assert got[key].shape == want.shape
        err = rel_l2(got[key], want)
        assert err < TOLERANCE, f"{name}/{exporter}/{weights} output {key}: relative L2 error {err:.2e}"
