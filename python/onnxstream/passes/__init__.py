"""The converter's graph rewrites, in the order they run. Each pass is a function ConvertGraph -> ConvertGraph
that leaves a valid graph (same outputs, same values up to float rounding), so any prefix of PASSES can be
checked against onnxruntime. The older fusions (fusion.py, fusion_conv.py) take the graph's parts as arguments;
the adapters below give them the same shape."""
from __future__ import annotations

from dataclasses import replace

from ..fusion import fuse_attention, fuse_gelu, fuse_group_norm, fuse_row_tiles, fuse_silu
from ..fusion_conv import fuse_convs
from ..graph import subgraphs
from ..subgraphs import read_by_subgraphs
from .activations import fuse_activation, fuse_hard_swish
from .cleanup import drop_identity, drop_unused_outputs
from .conv_affine import fold_batchnorm, fold_conv_add_mul
from .graph import ConvertGraph, Uses
from .layer_norm import fuse_layer_norm
from .views import static_reshapes

PASSES = [
    ("drop_identity", drop_identity),
    ("fuse_attention", lambda g: g.with_nodes(fuse_attention(g.nodes, g.outputs, g.shapes, g.consts))),
    ("fuse_group_norm", lambda g: g.with_nodes(fuse_group_norm(g.nodes, g.outputs, g.shapes, g.consts))),
    ("fuse_layer_norm", fuse_layer_norm),       # the nine-node layer norm of exports before opset 17
    ("fuse_silu", lambda g: g.with_nodes(fuse_silu(g.nodes, g.outputs))),
    ("fuse_gelu", lambda g: g.with_nodes(fuse_gelu(g.nodes, g.outputs, g.consts))),
    ("fuse_hard_swish", fuse_hard_swish),
    ("fold_batchnorm", fold_batchnorm),
    ("fold_conv_add_mul", fold_conv_add_mul),   # the bias-free conv + Add of Keras/TF exports
    ("fuse_activation", fuse_activation),       # after fuse_silu and fold_batchnorm: Conv -> BN -> act
    ("drop_unused_outputs", drop_unused_outputs),
    ("fuse_row_tiles", lambda g: g.with_nodes(fuse_row_tiles(g.nodes, g.outputs, g.shapes, g.consts))),
    ("fuse_convs", lambda g: g.with_nodes(fuse_convs(g.nodes, g.outputs, g.shapes, g.consts, g.weights))),
    ("static_reshapes", static_reshapes),       # last: the fusions match the exporters' own view ops
]


def run_passes(g: ConvertGraph, passes=None) -> ConvertGraph:
    """Every pass over g, then over each subgraph (an If branch or a loop body holds whole networks: silero's VAD,
    openWakeWord's verifier), whose outputs and the values its own subgraphs read stay as they are."""
    for _, fn in passes or PASSES:
        g = fn(g)
    for node in g.nodes:
        for sub in subgraphs(node):
            kept = [o.name for o in sub.outputs] + read_by_subgraphs(sub.nodes)
            sub.nodes = run_passes(replace(g, nodes=sub.nodes, outputs=kept), passes).nodes
    return g


__all__ = ["PASSES", "ConvertGraph", "Uses", "run_passes"]
