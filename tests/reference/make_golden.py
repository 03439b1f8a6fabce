"""Build the golden files of tests/reference/golden/ from switch_reference.py.

    python3 tests/reference/make_golden.py [--out DIR]

For each config in CONFIGS: draw float32-rounded parameters and int32 inputs with
numpy's default_rng (fixed seed), run the float64 reference, and write
<out>/<name>.safetensors (layout in README.md).  Deterministic: running it twice gives
byte-identical files.
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import switch_reference as ref  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "golden")
MIN_ROUTER_MARGIN = 1e-3  # top-1 prob must beat top-2 by this, so f32 routes identically
MAX_ATTEMPTS = 200

# Every ModelConfig field, written explicitly (nothing is left to proto defaults).
BASE = {
    "name": "",
    "vocab_size": 128,
    "d_model": 16,
    "d_ff": 32,
    "d_kv": 4,
    "num_heads": 4,
    "num_encoder_layers": 2,
    "num_decoder_layers": 2,
    "activation": "RELU",
    "num_experts": 4,
    "encoder_sparse_step": 0,
    "decoder_sparse_step": 0,
    "sparse_placement": "PLACEMENT_HF",
    "router_jitter_eps": 0.0,
    "jitter_reaches_experts": False,
    "capacity_mode": "CAPACITY_FACTOR",
    "train_capacity_factor": 1.25,
    "eval_capacity_factor": 2.0,
    "min_capacity": 1,
    "capacity_rounding": "ROUND_NEAREST",
    "expert_capacity": 64,
    "routing_group": "GROUP_SEQUENCE",
    "group_size": 0,
    "aux_loss_coef": 0.01,
    "aux_loss_mode": "AUX_PER_LAYER",
    "z_loss_coef": 0.001,
    "dropout_rate": 0.0,
    "expert_dropout_rate": 0.0,
    "init_scheme": "INIT_PAPER",
    "init_scale": 0.1,
    "tie_word_embeddings": True,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "norm_epsilon": 1e-6,
    "pad_token_id": 0,
    "eos_token_id": 1,
    "decoder_start_token_id": 0,
}
assert set(BASE) == set(ref.PROTO_DEFAULTS)

# (config overrides, generation settings, description)
CONFIGS = [
    (
        dict(name="dense", encoder_sparse_step=0, decoder_sparse_step=0, activation="RELU",
             num_encoder_layers=2, num_decoder_layers=2, tie_word_embeddings=True),
        dict(seed=1001, B=3, Te=9, Td=6),
        "Dense T5 v1.0 (no sparse block), ReLU FFN, tied embeddings; aux/z losses are 0.",
    ),
    (
        dict(name="switch_dropping", num_experts=4, encoder_sparse_step=2,
             decoder_sparse_step=2, sparse_placement="PLACEMENT_HF",
             num_encoder_layers=3, num_decoder_layers=3, activation="GATED_GELU",
             capacity_mode="CAPACITY_FACTOR", train_capacity_factor=1.25,
             eval_capacity_factor=0.5, min_capacity=1, capacity_rounding="ROUND_NEAREST",
             expert_capacity=3, routing_group="GROUP_SEQUENCE", aux_loss_coef=1e-2,
             z_loss_coef=1e-3, aux_loss_mode="AUX_PER_LAYER"),
        dict(seed=1002, B=3, Te=12, Td=7, router_scale=3.0, must_drop=True),
        "Switch, HF placement step 2 (block 1 of each stack), GEGLU experts, capacity factor "
        "0.5 at eval (encoder 0.5*12/4=1.5 -> 2, decoder 0.5*7/4=0.875 -> 1), per-sequence "
        "groups, router weights x3 so tokens are dropped; AUX_PER_LAYER.",
    ),
    (
        dict(name="switch_placements", num_experts=8, encoder_sparse_step=2,
             decoder_sparse_step=1, sparse_placement="PLACEMENT_T5X",
             num_encoder_layers=4, num_decoder_layers=3, activation="GELU",
             capacity_mode="CAPACITY_FIXED", expert_capacity=2, min_capacity=4,
             routing_group="GROUP_BATCH", aux_loss_mode="AUX_HF_CONCAT",
             aux_loss_coef=1e-2, z_loss_coef=1e-3, tie_word_embeddings=False,
             relative_attention_num_buckets=8, relative_attention_max_distance=16),
        dict(seed=1003, B=3, Te=11, Td=8),
        "Switch, T5X placement: encoder step 2 (blocks 1,3), decoder step 1 (all blocks); "
        "GELU; fixed expert_capacity 2 over the whole batch as one group; AUX_HF_CONCAT; "
        "untied lm_head; 8 buckets, max distance 16 (log branch reached in both stacks).",
    ),
    (
        dict(name="switch_fixed_groups", num_experts=3, encoder_sparse_step=1,
             decoder_sparse_step=1, sparse_placement="PLACEMENT_HF",
             num_encoder_layers=2, num_decoder_layers=2, activation="RELU",
             capacity_mode="CAPACITY_FACTOR", train_capacity_factor=2.0,
             eval_capacity_factor=1.4, min_capacity=1, capacity_rounding="ROUND_DOWN",
             expert_capacity=5, routing_group="GROUP_FIXED", group_size=6,
             aux_loss_mode="AUX_PER_LAYER", aux_loss_coef=1e-2, z_loss_coef=1e-3),
        dict(seed=1004, B=3, Te=10, Td=8),
        "Switch, every block sparse, 3 experts, fixed groups of 6 consecutive batch-major "
        "tokens (groups straddle sequences), capacity floor(1.4*6/3=2.8)=2 (ROUND_DOWN).",
    ),
    (
        dict(name="switch_t5x_step3", num_experts=4, encoder_sparse_step=3,
             decoder_sparse_step=3, sparse_placement="PLACEMENT_T5X",
             num_encoder_layers=6, num_decoder_layers=4, activation="GATED_GELU",
             capacity_mode="CAPACITY_FACTOR", train_capacity_factor=1.25,
             eval_capacity_factor=1.0, min_capacity=1, capacity_rounding="ROUND_NEAREST",
             expert_capacity=7, routing_group="GROUP_SEQUENCE", aux_loss_mode="AUX_PER_LAYER",
             aux_loss_coef=5e-3, z_loss_coef=2e-3,
             relative_attention_num_buckets=12, relative_attention_max_distance=20),
        dict(seed=1005, B=3, Te=10, Td=6),
        "Switch, T5X placement step 3 (encoder blocks 2,5; decoder block 2; HF placement would "
        "pick 1,4 and 1); capacity 1.0*10/4=2.5 rounds half-to-even to 2 (encoder), "
        "1.0*6/4=1.5 -> 2 (decoder); 12 buckets, max distance 20.",
    ),
    (
        dict(name="switch_dropless", num_experts=4, encoder_sparse_step=0,
             decoder_sparse_step=2, sparse_placement="PLACEMENT_HF",
             num_encoder_layers=2, num_decoder_layers=3, activation="GELU",
             capacity_mode="CAPACITY_DROPLESS", expert_capacity=1, min_capacity=4,
             routing_group="GROUP_BATCH", aux_loss_mode="AUX_HF_CONCAT",
             aux_loss_coef=1e-2, z_loss_coef=1e-3),
        dict(seed=1006, B=3, Te=9, Td=7),
        "Dense encoder, decoder block 1 sparse (HF step 2), dropless (expert_capacity 1 must "
        "be ignored), AUX_HF_CONCAT over the decoder stack only.",
    ),
]


# --------------------------------------------------------------------------------------
# safetensors
# --------------------------------------------------------------------------------------
DTYPES = {np.dtype(np.float32): ("F32", "<f4"), np.dtype(np.float64): ("F64", "<f8"),
          np.dtype(np.int32): ("I32", "<i4")}


def write_safetensors(path, tensors, metadata):
    """8-byte LE u64 header length, JSON header (space-padded to a multiple of 8), data."""
    header = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name in sorted(tensors):
        arr = np.asarray(tensors[name])
        tag, le = DTYPES[arr.dtype]
        data = np.ascontiguousarray(arr.astype(le)).tobytes()
        header[name] = {"dtype": tag, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * (-len(hbytes) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    """-> (dict name -> np.ndarray, metadata dict)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    metadata = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, info in header.items():
        le = {"F32": "<f4", "F64": "<f8", "I32": "<i4"}[info["dtype"]]
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(raw[base + b:base + e], dtype=le).reshape(info["shape"])
    return out, metadata


# --------------------------------------------------------------------------------------
# Parameters and inputs
# --------------------------------------------------------------------------------------
def ffn_shapes(cfg):
    d, f = cfg["d_model"], cfg["d_ff"]
    if cfg["activation"] == "GATED_GELU":
        return [("wi_0.weight", (f, d)), ("wi_1.weight", (f, d)), ("wo.weight", (d, f))]
    return [("wi.weight", (f, d)), ("wo.weight", (d, f))]


def param_specs(cfg, router_scale):
    """[(name, shape, kind, std)] in a fixed order; kind 'normal' or 'norm' (1 + noise)."""
    d, H, dkv, V = cfg["d_model"], cfg["num_heads"], cfg["d_kv"], cfg["vocab_size"]
    specs = [("shared.weight", (V, d), "normal", 1.0)]

    def attn(prefix, with_bias):
        out = [(prefix + w + ".weight", (H * dkv, d), "normal", d ** -0.5) for w in "qkv"]
        out.append((prefix + "o.weight", (d, H * dkv), "normal", (H * dkv) ** -0.5))
        if with_bias:
            out.append((prefix + "relative_attention_bias.weight",
                        (cfg["relative_attention_num_buckets"], H), "normal", 0.5))
        return out

    def ffn(prefix, sparse):
        out = [(prefix + "layer_norm.weight", (d,), "norm", 0.1)]
        fan_in = {"wi.weight": d, "wi_0.weight": d, "wi_1.weight": d, "wo.weight": cfg["d_ff"]}
        if sparse:
            E = cfg["num_experts"]
            out.append((prefix + "mlp.router.classifier.weight", (E, d), "normal",
                        router_scale * d ** -0.5))
            for j in range(E):
                for w, shape in ffn_shapes(cfg):
                    out.append((f"{prefix}mlp.experts.expert_{j}.{w}", shape, "normal",
                                fan_in[w] ** -0.5))
        else:
            for w, shape in ffn_shapes(cfg):
                out.append((prefix + "mlp." + w, shape, "normal", fan_in[w] ** -0.5))
        return out

    for i in range(cfg["num_encoder_layers"]):
        p = f"encoder.block.{i}."
        specs += attn(p + "layer.0.SelfAttention.", i == 0)
        specs.append((p + "layer.0.layer_norm.weight", (d,), "norm", 0.1))
        specs += ffn(p + "layer.1.", ref.is_sparse_block(
            i, cfg["encoder_sparse_step"], cfg["sparse_placement"]))
    specs.append(("encoder.final_layer_norm.weight", (d,), "norm", 0.1))
    for i in range(cfg["num_decoder_layers"]):
        p = f"decoder.block.{i}."
        specs += attn(p + "layer.0.SelfAttention.", i == 0)
        specs.append((p + "layer.0.layer_norm.weight", (d,), "norm", 0.1))
        specs += attn(p + "layer.1.EncDecAttention.", False)
        specs.append((p + "layer.1.layer_norm.weight", (d,), "norm", 0.1))
        specs += ffn(p + "layer.2.", ref.is_sparse_block(
            i, cfg["decoder_sparse_step"], cfg["sparse_placement"]))
    specs.append(("decoder.final_layer_norm.weight", (d,), "norm", 0.1))
    if not cfg["tie_word_embeddings"]:
        specs.append(("lm_head.weight", (V, d), "normal", d ** -0.5))
    return specs


def draw_params(cfg, rng, router_scale):
    params = {}
    for name, shape, kind, std in param_specs(cfg, router_scale):
        x = rng.standard_normal(shape) * std
        if kind == "norm":
            x = 1.0 + x
        params[name] = x.astype(np.float32)  # round to f32 BEFORE the f64 reference
    return params


def draw_inputs(cfg, rng, B, Te, Td):
    """Random ids; row 1 has trailing padding, row 2 a masked hole and a padded tail;
    every row keeps its first position."""
    V = cfg["vocab_size"]
    enc_mask = np.ones((B, Te), np.int32)
    enc_mask[1, Te - 3:] = 0
    enc_mask[2, Te // 2] = 0
    enc_mask[2, Te - 1] = 0
    dec_mask = np.ones((B, Td), np.int32)
    dec_mask[1, Td - 2:] = 0
    dec_mask[2, 3] = 0
    input_ids = rng.integers(2, V, size=(B, Te)).astype(np.int32)
    input_ids[enc_mask == 0] = cfg["pad_token_id"]
    dec_ids = rng.integers(2, V, size=(B, Td)).astype(np.int32)
    dec_ids[:, 0] = cfg["decoder_start_token_id"]
    dec_ids[dec_mask == 0] = cfg["pad_token_id"]
    labels = rng.integers(2, V, size=(B, Td)).astype(np.int32)
    labels[dec_mask == 0] = -100
    labels[0, 2] = -100
    return {"input.input_ids": input_ids, "input.attention_mask": enc_mask,
            "input.decoder_input_ids": dec_ids, "input.decoder_attention_mask": dec_mask,
            "input.labels": labels}


def check_buckets_unambiguous(cfg, Te, Td):
    """No r used lands where the bucket's log expression is (numerically) an integer at
    which float32 vs exact rounding could change the bucket."""
    nbk, md = cfg["relative_attention_num_buckets"], cfg["relative_attention_max_distance"]
    for bidir, T in ((True, Te), (False, Td)):
        nb = nbk // 2 if bidir else nbk
        me = nb // 2
        for r in range(me, T):
            v = math.log(r / me) / math.log(md / me) * (nb - me)
            lo = min(nb - 1, me + math.trunc(v - 1e-6))
            hi = min(nb - 1, me + math.trunc(v + 1e-6))
            assert lo == hi, f"{cfg['name']}: bucket of r={r} is at a rounding edge ({v})"


def router_margins_ok(result):
    for stack in ("encoder", "decoder"):
        for rec in result["routing"][stack].values():
            top2 = np.sort(rec.probs, axis=-1)[:, -2:]
            if np.any(top2[:, 1] - top2[:, 0] < MIN_ROUTER_MARGIN):
                return False
    return True


def build(overrides, gen):
    cfg = dict(BASE)
    cfg.update(overrides)
    B, Te, Td = gen["B"], gen["Te"], gen["Td"]
    check_buckets_unambiguous(cfg, Te, Td)
    for attempt in range(MAX_ATTEMPTS):
        rng = np.random.default_rng([gen["seed"], attempt])
        params = draw_params(cfg, rng, gen.get("router_scale", 1.0))
        inputs = draw_inputs(cfg, rng, B, Te, Td)
        result = ref.forward(cfg, params, inputs["input.input_ids"],
                             inputs["input.attention_mask"], inputs["input.decoder_input_ids"],
                             inputs["input.decoder_attention_mask"], inputs["input.labels"])
        if router_margins_ok(result):
            return cfg, params, inputs, result, attempt
    raise RuntimeError(f"{cfg['name']}: no draw with router margins >= {MIN_ROUTER_MARGIN}")


def golden_tensors(params, inputs, result):
    t = dict(params)
    t.update(inputs)
    t["expected.logits"] = result["logits"]
    t["expected.encoder_output"] = result["encoder_output"]
    for k in ("loss", "ce_loss", "aux_loss", "z_loss"):
        t["expected." + k] = np.array([result[k]], np.float64)
    for stack in ("encoder", "decoder"):
        for block, rec in result["routing"][stack].items():
            p = f"expected.routing.{stack}.{block}."
            t[p + "expert_index"] = rec.expert_index.astype(np.int32)
            t[p + "tokens_per_expert"] = rec.tokens_per_expert()
            t[p + "kept_per_expert"] = rec.kept_per_expert()
            t[p + "dropped_fraction"] = np.array([rec.dropped_fraction()], np.float64)
            t[p + "router_entropy"] = np.array([rec.router_entropy()], np.float64)
    return t


def routing_summary(result):
    parts = []
    for stack in ("encoder", "decoder"):
        for block, rec in result["routing"][stack].items():
            parts.append(f"{stack}.{block}: capacity {rec.capacity}, dropped "
                         f"{int(len(rec.kept) - rec.kept.sum())}/{len(rec.kept)}")
    return "; ".join(parts) if parts else "no sparse blocks"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    for overrides, gen, desc in CONFIGS:
        cfg, params, inputs, result, attempt = build(overrides, gen)
        if gen.get("must_drop"):
            for stack in ("encoder", "decoder"):
                for block, rec in result["routing"][stack].items():
                    assert rec.dropped_fraction() > 0, f"{cfg['name']} {stack}.{block} drops nothing"
        description = (
            f"{desc} B={gen['B']} Te={gen['Te']} Td={gen['Td']}; rng default_rng([{gen['seed']}, "
            f"{attempt}]); router top-1 beats top-2 by >= {MIN_ROUTER_MARGIN}; "
            f"{routing_summary(result)}. Eval mode (no dropout, no jitter). Generated by "
            f"tests/reference/make_golden.py from switch_reference.py (float64).")
        path = os.path.join(args.out, cfg["name"] + ".safetensors")
        write_safetensors(path, golden_tensors(params, inputs, result),
                          {"config": ref.config_to_text(cfg), "description": description})
        if not args.quiet:
            print(f"{path}: {os.path.getsize(path)} bytes, loss {result['loss']:.6f} "
                  f"(ce {result['ce_loss']:.6f} aux {result['aux_loss']:.6g} "
                  f"z {result['z_loss']:.6g}); attempt {attempt}; {routing_summary(result)}")


if __name__ == "__main__":
    main()
