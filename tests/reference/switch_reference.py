"""Independent float64 numpy reference of the Switch Transformer forward pass.

Written from docs/MATH.md (section numbers cited as "§n") and the ModelConfig
fields of core/proto/libswitch.proto, NOT from the C++ code, so that the two can
disagree.  Eval mode only: no dropout, no router jitter.

  cfg     dict keyed by ModelConfig field names; enum values are their proto names
          ("GATED_GELU", "PLACEMENT_T5X", ...).  Missing keys take the proto defaults
          (see PROTO_FIELDS / full_config).
  params  dict keyed by HuggingFace switch_transformers parameter names
          ("encoder.block.0.layer.0.SelfAttention.q.weight", ...).  A linear layer
          computes y = x @ W.T.

Everything is float64.  So that regenerating the golden files gives the same bytes on
any x86-64 CPU, matrix products do not go through BLAS (whose kernels and summation
order depend on the CPU) and exp/log/tanh go through Python's `math` module (libm)
rather than numpy's CPU-dispatched SIMD versions.  See `linear`, `_exp`, `_log`,
`_tanh`.
"""

import math
from dataclasses import dataclass

import numpy as np

# --------------------------------------------------------------------------------------
# Config: the ModelConfig fields, in proto order, with their proto types and defaults.
# --------------------------------------------------------------------------------------
# (name, kind, default); kind is "string" | "int" | "double" | "bool" | "enum".
PROTO_FIELDS = [
    ("name", "string", ""),
    ("vocab_size", "int", 32128),
    ("d_model", "int", 768),
    ("d_ff", "int", 3072),
    ("d_kv", "int", 64),
    ("num_heads", "int", 12),
    ("num_encoder_layers", "int", 12),
    ("num_decoder_layers", "int", 12),
    ("activation", "enum", "RELU"),
    ("num_experts", "int", 8),
    ("encoder_sparse_step", "int", 2),
    ("decoder_sparse_step", "int", 2),
    ("sparse_placement", "enum", "PLACEMENT_HF"),
    ("router_jitter_eps", "double", 0.01),
    ("jitter_reaches_experts", "bool", False),
    ("capacity_mode", "enum", "CAPACITY_FIXED"),
    ("train_capacity_factor", "double", 1.25),
    ("eval_capacity_factor", "double", 2.0),
    ("min_capacity", "int", 4),
    ("capacity_rounding", "enum", "ROUND_NEAREST"),
    ("expert_capacity", "int", 64),
    ("routing_group", "enum", "GROUP_SEQUENCE"),
    ("group_size", "int", 0),
    ("aux_loss_coef", "double", 0.001),
    ("aux_loss_mode", "enum", "AUX_PER_LAYER"),
    ("z_loss_coef", "double", 0.001),
    ("dropout_rate", "double", 0.1),
    ("expert_dropout_rate", "double", 0.1),
    ("init_scheme", "enum", "INIT_PAPER"),
    ("init_scale", "double", 0.1),
    ("tie_word_embeddings", "bool", True),
    ("relative_attention_num_buckets", "int", 32),
    ("relative_attention_max_distance", "int", 128),
    ("norm_epsilon", "double", 1e-6),
    ("pad_token_id", "int", 0),
    ("eos_token_id", "int", 1),
    ("decoder_start_token_id", "int", 0),
]
PROTO_DEFAULTS = {name: default for name, _, default in PROTO_FIELDS}


def full_config(cfg):
    """cfg with every ModelConfig field present (proto defaults for missing ones)."""
    unknown = set(cfg) - set(PROTO_DEFAULTS)
    if unknown:
        raise KeyError(f"not ModelConfig fields: {sorted(unknown)}")
    out = dict(PROTO_DEFAULTS)
    out.update(cfg)
    return out


def config_to_text(cfg):
    """Protobuf text format, one `field: value` per line, every field, proto order."""
    cfg = full_config(cfg)
    lines = []
    for name, kind, _ in PROTO_FIELDS:
        v = cfg[name]
        if kind == "string":
            s = '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
        elif kind == "int":
            s = str(int(v))
        elif kind == "double":
            s = repr(float(v))
        elif kind == "bool":
            s = "true" if v else "false"
        else:
            s = str(v)
        lines.append(f"{name}: {s}")
    return "\n".join(lines) + "\n"


def config_from_text(text):
    """Parse what config_to_text writes (flat `field: value` lines only)."""
    kinds = {name: kind for name, kind, _ in PROTO_FIELDS}
    cfg = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, value = (s.strip() for s in line.split(":", 1))
        kind = kinds[name]
        if kind == "string":
            cfg[name] = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        elif kind == "int":
            cfg[name] = int(value)
        elif kind == "double":
            cfg[name] = float(value)
        elif kind == "bool":
            cfg[name] = value == "true"
        else:
            cfg[name] = value
    return cfg


# --------------------------------------------------------------------------------------
# Deterministic elementary operations (see module docstring).
# --------------------------------------------------------------------------------------
_exp = np.vectorize(math.exp, otypes=[np.float64])
_tanh = np.vectorize(math.tanh, otypes=[np.float64])


def _log(x):
    x = np.asarray(x, dtype=np.float64)
    return np.vectorize(lambda v: math.log(v) if v > 0 else -math.inf, otypes=[np.float64])(x)


def linear(x, w):
    """y = x @ w.T for w [out, in], summed with numpy's fixed pairwise summation."""
    return (x[..., None, :] * w).sum(axis=-1)


def bmm(a, b):
    """Batched a @ b for a [..., m, k], b [..., k, n] (same summation as `linear`)."""
    return (a[..., :, None, :] * np.swapaxes(b, -1, -2)[..., None, :, :]).sum(axis=-1)


def softmax(x, axis=-1):
    m = np.max(x, axis=axis, keepdims=True)
    e = _exp(x - m)
    return e / e.sum(axis=axis, keepdims=True)


def logsumexp(x, axis=-1):
    m = np.max(x, axis=axis, keepdims=True)
    return (m + _log(_exp(x - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def log_softmax(x, axis=-1):
    return x - np.expand_dims(logsumexp(x, axis=axis), axis)


# --------------------------------------------------------------------------------------
# §1 Backbone pieces
# --------------------------------------------------------------------------------------
def rms_norm(x, w, eps):
    """§1: LN is RMSNorm, w * x / sqrt(mean(x^2) + eps); no mean subtraction, no bias."""
    var = np.mean(x * x, axis=-1, keepdims=True)
    return w * (x / np.sqrt(var + eps))


def gelu_tanh(x):
    """The tanh approximation ("gelu_new"), proto Activation comment."""
    return 0.5 * x * (1.0 + _tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


def relative_position_bucket(rel, bidirectional, num_buckets, max_distance):
    """§1 bucket of rel = key_pos - query_pos (128 in docs/MATH.md replaced by max_distance).

    Encoder (bidirectional): nb = num_buckets/2, +nb when rel > 0, r = |rel|.
    Decoder: nb = num_buckets, r = max(-rel, 0).
    max_exact = nb/2; bucket = r if r < max_exact, else
      min(nb-1, max_exact + trunc(log(r/max_exact)/log(max_distance/max_exact)*(nb-max_exact))).
    The log branch is evaluated in float32 (as HF does) and truncated toward zero.
    """
    rel = np.asarray(rel, dtype=np.int64)
    nb = num_buckets
    offset = np.zeros_like(rel)
    if bidirectional:
        nb = num_buckets // 2
        offset = np.where(rel > 0, nb, 0)
        r = np.abs(rel)
    else:
        r = np.maximum(-rel, 0)
    max_exact = nb // 2
    r_large = np.maximum(r, max_exact).astype(np.float32)  # log only where r >= max_exact
    scaled = (
        np.log(r_large / np.float32(max_exact))
        / np.float32(math.log(max_distance / max_exact))
        * np.float32(nb - max_exact)
    ).astype(np.float32)
    large = np.minimum(nb - 1, max_exact + np.trunc(scaled).astype(np.int64))
    return offset + np.where(r < max_exact, r, large)


def position_bias(weight, q_len, k_len, bidirectional, cfg):
    """§1: bias[h, i, j] = relative_attention_bias.weight[bucket(j - i), h] -> [1, H, q, k]."""
    rel = np.arange(k_len)[None, :] - np.arange(q_len)[:, None]
    buckets = relative_position_bucket(
        rel, bidirectional, cfg["relative_attention_num_buckets"],
        cfg["relative_attention_max_distance"])
    return weight[buckets].transpose(2, 0, 1)[None]  # [q, k, H] -> [1, H, q, k]


def mask_term(mask):
    """§1: additive mask (1 - m) * min_float32 (m = 1 keep, 0 masked)."""
    return (1.0 - mask.astype(np.float64)) * float(np.finfo(np.float32).min)


def attention(x_q, x_kv, params, prefix, cfg, bias):
    """§1 multi-head attention: scores = q k^T (no 1/sqrt(d_kv)) + bias (position + mask).

    x_q [B, Tq, d], x_kv [B, Tk, d]; bias broadcastable to [B, H, Tq, Tk].
    """
    H, dkv = cfg["num_heads"], cfg["d_kv"]

    def heads(t):  # [B, T, H*dkv] -> [B, H, T, dkv]
        B, T, _ = t.shape
        return t.reshape(B, T, H, dkv).transpose(0, 2, 1, 3)

    q = heads(linear(x_q, params[prefix + "q.weight"]))
    k = heads(linear(x_kv, params[prefix + "k.weight"]))
    v = heads(linear(x_kv, params[prefix + "v.weight"]))
    scores = bmm(q, np.swapaxes(k, -1, -2)) + bias
    probs = softmax(scores, axis=-1)
    ctx = bmm(probs, v)  # [B, H, Tq, dkv]
    B, _, Tq, _ = ctx.shape
    ctx = ctx.transpose(0, 2, 1, 3).reshape(B, Tq, H * dkv)  # concat heads
    return linear(ctx, params[prefix + "o.weight"])


def dense_ffn(x, params, prefix, activation):
    """§1 dense FFN without bias: wo(act(wi x)), or GEGLU wo(gelu(wi_0 x) * wi_1 x)."""
    if activation == "RELU":
        h = np.maximum(linear(x, params[prefix + "wi.weight"]), 0.0)
    elif activation == "GELU":
        h = gelu_tanh(linear(x, params[prefix + "wi.weight"]))
    elif activation == "GATED_GELU":
        h = gelu_tanh(linear(x, params[prefix + "wi_0.weight"])) * linear(
            x, params[prefix + "wi_1.weight"])
    else:
        raise ValueError(f"unknown activation {activation}")
    return linear(h, params[prefix + "wo.weight"])


# --------------------------------------------------------------------------------------
# §2 Switch FFN
# --------------------------------------------------------------------------------------
def is_sparse_block(i, step, placement):
    """§2 which blocks are sparse: step 0 dense; HF: i % step == 1 or step == 1;
    T5X: i % step == step - 1."""
    if step == 0:
        return False
    if placement == "PLACEMENT_HF":
        return step == 1 or i % step == 1
    if placement == "PLACEMENT_T5X":
        return i % step == step - 1
    raise ValueError(f"unknown placement {placement}")


def routing_groups(batch, seq_len, cfg):
    """§2 groups over the batch-major flattened tokens -> (group id per token, tokens_per_group)."""
    n = batch * seq_len
    mode = cfg["routing_group"]
    if mode == "GROUP_SEQUENCE":
        size = seq_len
    elif mode == "GROUP_BATCH":
        size = n
    elif mode == "GROUP_FIXED":
        size = cfg["group_size"]
        if size <= 0 or n % size != 0:
            raise ValueError(f"group_size {size} must divide batch*length {n}")
    else:
        raise ValueError(f"unknown routing_group {mode}")
    return np.arange(n) // size, size


def expert_capacity(tokens_per_group, cfg):
    """§2 capacity per expert per group (eval mode: eval_capacity_factor)."""
    mode = cfg["capacity_mode"]
    if mode == "CAPACITY_FACTOR":
        raw = cfg["eval_capacity_factor"] * tokens_per_group / cfg["num_experts"]
        if cfg["capacity_rounding"] == "ROUND_NEAREST":
            rounded = np.rint(raw)  # round half to even (Python/T5X round())
        elif cfg["capacity_rounding"] == "ROUND_DOWN":
            rounded = math.floor(raw)  # MTF int()
        else:
            raise ValueError(cfg["capacity_rounding"])
        return max(int(cfg["min_capacity"]), int(rounded))
    if mode == "CAPACITY_FIXED":
        return int(cfg["expert_capacity"])
    if mode == "CAPACITY_DROPLESS":
        return int(tokens_per_group)
    raise ValueError(f"unknown capacity_mode {mode}")


def capacity_keep_mask(expert_index, group_ids, capacity, num_experts):
    """§2 priority: first come in token order within the group; a token is kept iff its
    inclusive running count for its expert within its group is <= capacity."""
    kept = np.zeros(len(expert_index), dtype=bool)
    counts = {}
    for n, (g, e) in enumerate(zip(group_ids.tolist(), expert_index.tolist())):
        counts[(g, e)] = counts.get((g, e), 0) + 1
        kept[n] = counts[(g, e)] <= capacity
    return kept


@dataclass
class RoutingRecord:
    """What one sparse layer's router did; tokens are batch-major flattened [B*T]."""
    batch: int
    seq_len: int
    num_experts: int
    logits: np.ndarray       # [N, E]
    probs: np.ndarray        # [N, E]
    expert_index: np.ndarray  # [N] argmax expert (before capacity)
    kept: np.ndarray         # [N] bool, survived capacity
    group_ids: np.ndarray    # [N]
    capacity: int

    def tokens_per_expert(self):
        return np.bincount(self.expert_index, minlength=self.num_experts).astype(np.float64)

    def kept_per_expert(self):
        return np.bincount(self.expert_index[self.kept],
                           minlength=self.num_experts).astype(np.float64)

    def dropped_fraction(self):
        return 1.0 - self.kept.sum() / len(self.kept)

    def router_entropy(self):
        p = self.probs
        plogp = np.where(p > 0, p * _log(np.where(p > 0, p, 1.0)), 0.0)
        return float(np.mean(-plogp.sum(axis=-1)))


def switch_ffn(x, params, prefix, cfg):
    """§2 Switch FFN on the normed hidden x [B, T, d] -> (output [B, T, d], RoutingRecord).

    Router logits = x W_r^T, p = softmax, e = argmax (ties -> lowest index), gate = p_e.
    Kept token: gate * expert_e(x); dropped token: 0 (sublayer passes h through).
    """
    B, T, d = x.shape
    E = cfg["num_experts"]
    tokens = x.reshape(B * T, d)
    logits = linear(tokens, params[prefix + "router.classifier.weight"])  # [N, E]
    probs = softmax(logits, axis=-1)
    expert = np.argmax(probs, axis=-1)  # numpy argmax returns the first maximum
    gate = probs[np.arange(B * T), expert]

    group_ids, tokens_per_group = routing_groups(B, T, cfg)
    capacity = expert_capacity(tokens_per_group, cfg)
    kept = capacity_keep_mask(expert, group_ids, capacity, E)

    out = np.zeros_like(tokens)
    for e in range(E):
        sel = kept & (expert == e)
        if sel.any():
            y = dense_ffn(tokens[sel], params, f"{prefix}experts.expert_{e}.", cfg["activation"])
            out[sel] = gate[sel, None] * y
    record = RoutingRecord(B, T, E, logits, probs, expert, kept, group_ids, capacity)
    return out.reshape(B, T, d), record


# --------------------------------------------------------------------------------------
# §3 Auxiliary losses
# --------------------------------------------------------------------------------------
def load_balance(probs, expert_index, num_experts):
    """§3 eq. 4-6 without alpha: E * sum_i f_i * P_i over one set of tokens."""
    f = np.bincount(expert_index, minlength=num_experts) / len(expert_index)
    P = probs.mean(axis=0)
    return num_experts * float(np.sum(f * P))


def aux_losses_per_layer(records, cfg):
    """AUX_PER_LAYER (MTF/T5X): per layer, per group L_g = alpha*E*sum f_i P_i with f
    before capacity; layer loss = mean over groups; z = beta * mean_tokens(lse^2);
    both summed over the sparse layers."""
    aux = z = 0.0
    for rec in records:
        groups = np.unique(rec.group_ids)
        per_group = [
            load_balance(rec.probs[rec.group_ids == g], rec.expert_index[rec.group_ids == g],
                         rec.num_experts)
            for g in groups
        ]
        aux += cfg["aux_loss_coef"] * float(np.mean(per_group))
        z += cfg["z_loss_coef"] * float(np.mean(logsumexp(rec.logits) ** 2))
    return aux, z


def aux_losses_hf_concat(stack_records, cfg):
    """AUX_HF_CONCAT (HF parity): for one stack, per sequence b concatenate its tokens of
    all the stack's sparse layers; f from the post-capacity expert (dropped -> expert 0);
    aux = alpha * E * mean_b sum_i f_bi P_bi; z = beta * mean over all those tokens of lse^2."""
    if not stack_records:
        return 0.0, 0.0
    B, E = stack_records[0].batch, stack_records[0].num_experts
    probs = np.concatenate(
        [r.probs.reshape(B, r.seq_len, E) for r in stack_records], axis=1)  # [B, T*L, E]
    logits = np.concatenate(
        [r.logits.reshape(B, r.seq_len, E) for r in stack_records], axis=1)
    post = np.concatenate(
        [np.where(r.kept, r.expert_index, 0).reshape(B, r.seq_len) for r in stack_records],
        axis=1)  # [B, T*L]
    per_seq = [load_balance(probs[b], post[b], E) for b in range(B)]
    aux = cfg["aux_loss_coef"] * float(np.mean(per_seq))
    z = cfg["z_loss_coef"] * float(np.mean(logsumexp(logits) ** 2))
    return aux, z


# --------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------
def ffn_sublayer(h, params, prefix, sparse, cfg):
    """Pre-norm FFN sublayer: h + F(LN(h)), F dense or Switch (§1, §2)."""
    x = rms_norm(h, params[prefix + "layer_norm.weight"], cfg["norm_epsilon"])
    if sparse:
        y, rec = switch_ffn(x, params, prefix + "mlp.", cfg)
        return h + y, rec
    return h + dense_ffn(x, params, prefix + "mlp.", cfg["activation"]), None


def encode(params, input_ids, attention_mask, cfg):
    """§1 encoder: embeddings (unscaled) -> blocks (self-attn, FFN) -> final RMSNorm."""
    eps = cfg["norm_epsilon"]
    h = params["shared.weight"][input_ids]
    T = input_ids.shape[1]
    # block 0 owns the bias; every block reuses bias + mask (§1)
    bias = position_bias(params["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"],
                         T, T, True, cfg)
    bias = bias + mask_term(attention_mask)[:, None, None, :]
    records = {}
    for i in range(cfg["num_encoder_layers"]):
        p = f"encoder.block.{i}."
        x = rms_norm(h, params[p + "layer.0.layer_norm.weight"], eps)
        h = h + attention(x, x, params, p + "layer.0.SelfAttention.", cfg, bias)
        sparse = is_sparse_block(i, cfg["encoder_sparse_step"], cfg["sparse_placement"])
        h, rec = ffn_sublayer(h, params, p + "layer.1.", sparse, cfg)
        if rec is not None:
            records[i] = rec
    return rms_norm(h, params["encoder.final_layer_norm.weight"], eps), records


def decode(params, decoder_input_ids, decoder_attention_mask, enc_out, attention_mask, cfg):
    """§1 decoder: causal self-attn, cross-attn (no position bias), FFN; final RMSNorm."""
    eps = cfg["norm_epsilon"]
    h = params["shared.weight"][decoder_input_ids]
    T = decoder_input_ids.shape[1]
    bias = position_bias(params["decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"],
                         T, T, False, cfg)
    causal = np.tril(np.ones((T, T)))  # key j > query i masked
    self_mask = causal[None, :, :] * decoder_attention_mask[:, None, :]  # [B, Tq, Tk]
    self_bias = bias + mask_term(self_mask)[:, None, :, :]
    cross_bias = mask_term(attention_mask)[:, None, None, :]
    records = {}
    for i in range(cfg["num_decoder_layers"]):
        p = f"decoder.block.{i}."
        x = rms_norm(h, params[p + "layer.0.layer_norm.weight"], eps)
        h = h + attention(x, x, params, p + "layer.0.SelfAttention.", cfg, self_bias)
        x = rms_norm(h, params[p + "layer.1.layer_norm.weight"], eps)
        h = h + attention(x, enc_out, params, p + "layer.1.EncDecAttention.", cfg, cross_bias)
        sparse = is_sparse_block(i, cfg["decoder_sparse_step"], cfg["sparse_placement"])
        h, rec = ffn_sublayer(h, params, p + "layer.2.", sparse, cfg)
        if rec is not None:
            records[i] = rec
    return rms_norm(h, params["decoder.final_layer_norm.weight"], eps), records


def forward(cfg, params, input_ids, attention_mask, decoder_input_ids,
            decoder_attention_mask, labels):
    """Eval-mode forward pass.  Returns a dict with logits [B, Td, V], encoder_output
    [B, Te, d], ce_loss, aux_loss, z_loss, loss (floats) and routing
    {"encoder": {block: RoutingRecord}, "decoder": {...}}."""
    cfg = full_config(cfg)
    params = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    enc_out, enc_records = encode(params, input_ids, attention_mask, cfg)
    dec_out, dec_records = decode(params, decoder_input_ids, decoder_attention_mask,
                                  enc_out, attention_mask, cfg)

    # §1 tied: logits = shared(dec_out * d_model^-0.5); untied: lm_head, no rescale.
    if cfg["tie_word_embeddings"]:
        logits = linear(dec_out * cfg["d_model"] ** -0.5, params["shared.weight"])
    else:
        logits = linear(dec_out, params["lm_head.weight"])

    # §1 cross-entropy, labels -100 ignored.
    valid = labels != -100
    logp = log_softmax(logits, axis=-1)
    picked = np.take_along_axis(logp, np.where(valid, labels, 0)[..., None], axis=-1)[..., 0]
    ce = float(-picked[valid].mean())

    # §3 auxiliary losses.
    if cfg["aux_loss_mode"] == "AUX_PER_LAYER":
        aux, z = aux_losses_per_layer(list(enc_records.values()) + list(dec_records.values()), cfg)
    elif cfg["aux_loss_mode"] == "AUX_HF_CONCAT":
        # §10: transformers adds a stack's terms only when its sparse step is above 1.
        ea, ez = (aux_losses_hf_concat(list(enc_records.values()), cfg)
                  if cfg["encoder_sparse_step"] > 1 else (0.0, 0.0))
        da, dz = (aux_losses_hf_concat(list(dec_records.values()), cfg)
                  if cfg["decoder_sparse_step"] > 1 else (0.0, 0.0))
        aux, z = ea + da, ez + dz
    else:
        raise ValueError(cfg["aux_loss_mode"])

    return {
        "logits": logits,
        "encoder_output": enc_out,
        "decoder_output": dec_out,
        "ce_loss": ce,
        "aux_loss": aux,
        "z_loss": z,
        "loss": ce + aux + z,  # §3 total
        "routing": {"encoder": enc_records, "decoder": dec_records},
    }
