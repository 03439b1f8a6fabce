"""Tests of the numpy reference (switch_reference.py) and its golden files.

    python3 -m pytest tests/reference -q
"""

import math
import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_golden as mg  # noqa: E402
import switch_reference as ref  # noqa: E402

GOLDEN = os.path.join(HERE, "golden")
NAMES = [overrides["name"] for overrides, _, _ in mg.CONFIGS]


def _cfg(**kw):
    cfg = dict(mg.BASE)
    cfg.update(kw)
    return ref.full_config(cfg)


# --------------------------------------------------------------------------------------
# Golden files
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    out = tmp_path_factory.mktemp("golden")
    mg.main(["--out", str(out), "--quiet"])
    return out


def test_goldens_byte_identical(regenerated):
    checked_in = sorted(f for f in os.listdir(GOLDEN) if f.endswith(".safetensors"))
    assert checked_in == sorted(os.listdir(regenerated)) == sorted(n + ".safetensors" for n in NAMES)
    for f in checked_in:
        with open(os.path.join(GOLDEN, f), "rb") as a, open(os.path.join(regenerated, f), "rb") as b:
            old, new = a.read(), b.read()
        if old != new:  # say which tensors moved, to tell a real change from last-ulp noise
            t_old, m_old = mg.read_safetensors(os.path.join(GOLDEN, f))
            t_new, m_new = mg.read_safetensors(os.path.join(regenerated, f))
            diffs = [k for k in sorted(set(t_old) | set(t_new))
                     if k not in t_old or k not in t_new or t_old[k].shape != t_new[k].shape
                     or not np.array_equal(t_old[k], t_new[k])]
            detail = [f"{k}: max|diff|="
                      f"{np.max(np.abs(t_old[k].astype(float) - t_new[k].astype(float))):.3g}"
                      if k in t_old and k in t_new and t_old[k].shape == t_new[k].shape else k
                      for k in diffs]
            pytest.fail(f"{f} differs from a fresh make_golden.py run; metadata equal: "
                        f"{m_old == m_new}; tensors: {detail}")


@pytest.mark.parametrize("name", NAMES)
def test_golden_layout_and_replay(name):
    path = os.path.join(GOLDEN, name + ".safetensors")
    assert os.path.getsize(path) < 1 << 20
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
    assert n % 8 == 0
    t, meta = mg.read_safetensors(path)
    assert set(meta) == {"config", "description"}
    cfg = ref.config_from_text(meta["config"])
    assert set(cfg) == set(ref.PROTO_DEFAULTS)  # every field written explicitly
    assert cfg["name"] == name and cfg["norm_epsilon"] == 1e-6 and cfg["dropout_rate"] == 0.0

    for k, v in t.items():
        want = np.float32 if k.endswith(".weight") else (
            np.int32 if k.startswith("input.") or k.endswith("expert_index") else np.float64)
        assert v.dtype == want, k
    for m in ("input.attention_mask", "input.decoder_attention_mask"):
        assert (t[m][:, 0] == 1).all() and (t[m] == 0).any()
    assert (t["input.labels"] == -100).any()
    assert ("lm_head.weight" in t) == (not cfg["tie_word_embeddings"])

    params = {k: v for k, v in t.items() if k.endswith(".weight")}
    res = ref.forward(cfg, params, t["input.input_ids"], t["input.attention_mask"],
                      t["input.decoder_input_ids"], t["input.decoder_attention_mask"],
                      t["input.labels"])
    expected = mg.golden_tensors(params, {k: v for k, v in t.items() if k.startswith("input.")}, res)
    assert sorted(expected) == sorted(t)
    for k in t:
        np.testing.assert_array_equal(t[k], expected[k], err_msg=k)
    assert t["expected.loss"][0] == t["expected.ce_loss"][0] + t["expected.aux_loss"][0] + \
        t["expected.z_loss"][0]


def test_switch_dropping_drops_tokens():
    t, _ = mg.read_safetensors(os.path.join(GOLDEN, "switch_dropping.safetensors"))
    fracs = [v[0] for k, v in t.items() if k.endswith("dropped_fraction")]
    assert len(fracs) == 2 and all(f > 0 for f in fracs)


# --------------------------------------------------------------------------------------
# Hand-derived checks of the reference itself
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("rel,bidir,nb,md,want", [
    # encoder, 32 buckets / 128: nb=16, max_exact=8, +16 for rel > 0
    (0, True, 32, 128, 0), (-1, True, 32, 128, 1), (1, True, 32, 128, 17),
    (-7, True, 32, 128, 7), (3, True, 32, 128, 19), (-8, True, 32, 128, 8),
    (-12, True, 32, 128, 9),     # 8 + trunc(log(1.5)/log(16)*8 = 1.17)
    (-20, True, 32, 128, 10),    # 8 + trunc(log(2.5)/log(16)*8 = 2.64)
    (100, True, 32, 128, 31),    # 16 + 8 + trunc(7.29)
    (-1000, True, 32, 128, 15),  # clamped to nb-1
    # decoder, 32 buckets / 128: nb=32, max_exact=16, r = max(-rel, 0)
    (5, False, 32, 128, 0), (-5, False, 32, 128, 5), (-15, False, 32, 128, 15),
    (-16, False, 32, 128, 16),
    (-20, False, 32, 128, 17),   # 16 + trunc(log(1.25)/log(8)*16 = 1.72)
    (-127, False, 32, 128, 31),  # 16 + trunc(15.94)
    (-500, False, 32, 128, 31),
    # 8 buckets / 16: encoder nb=4, max_exact=2; decoder nb=8, max_exact=4
    (-1, True, 8, 16, 1), (1, True, 8, 16, 5), (-2, True, 8, 16, 2),
    (-5, True, 8, 16, 2),        # 2 + trunc(log(2.5)/log(8)*2 = 0.88)
    (-6, True, 8, 16, 3), (6, True, 8, 16, 7),
    (-5, False, 8, 16, 4),       # 4 + trunc(log(1.25)/log(4)*4 = 0.64)
    (-7, False, 8, 16, 5),       # 4 + trunc(log(1.75)/log(4)*4 = 1.61)
])
def test_relative_position_bucket(rel, bidir, nb, md, want):
    assert int(ref.relative_position_bucket(rel, bidir, nb, md)) == want


def test_position_bias_orientation():
    cfg = _cfg(relative_attention_num_buckets=32, relative_attention_max_distance=128)
    w = np.arange(32 * 2, dtype=np.float64).reshape(32, 2)  # [bucket, head]
    b = ref.position_bias(w, 3, 3, True, cfg)
    assert b.shape == (1, 2, 3, 3)
    assert b[0, 1, 0, 1] == w[17, 1]  # key 1, query 0: rel = +1 -> bucket 17
    assert b[0, 0, 2, 0] == w[2, 0]   # key 0, query 2: rel = -2 -> bucket 2
    d = ref.position_bias(w, 3, 3, False, cfg)
    assert d[0, 0, 0, 2] == w[0, 0] and d[0, 1, 2, 0] == w[2, 1]


def test_rms_norm_and_gelu():
    x = np.array([3.0, 4.0])
    np.testing.assert_allclose(ref.rms_norm(x, np.array([1.0, 2.0]), 0.0),
                               [3 / math.sqrt(12.5), 8 / math.sqrt(12.5)], rtol=1e-15)
    np.testing.assert_allclose(ref.gelu_tanh(np.array([1.0, -1.0, 0.0])),
                               [0.8411919906082768, -0.15880800939172324, 0.0], rtol=1e-14)


@pytest.mark.parametrize("step,placement,n,want", [
    (2, "PLACEMENT_HF", 6, [1, 3, 5]), (2, "PLACEMENT_T5X", 6, [1, 3, 5]),
    (3, "PLACEMENT_HF", 6, [1, 4]), (3, "PLACEMENT_T5X", 6, [2, 5]),
    (1, "PLACEMENT_HF", 3, [0, 1, 2]), (1, "PLACEMENT_T5X", 3, [0, 1, 2]),
    (0, "PLACEMENT_HF", 3, []),
])
def test_sparse_placement(step, placement, n, want):
    assert [i for i in range(n) if ref.is_sparse_block(i, step, placement)] == want


def test_capacity_formula():
    f = dict(capacity_mode="CAPACITY_FACTOR", num_experts=4, min_capacity=1)
    assert ref.expert_capacity(10, _cfg(**f, eval_capacity_factor=1.0)) == 2  # 2.5 half-even
    assert ref.expert_capacity(14, _cfg(**f, eval_capacity_factor=1.0)) == 4  # 3.5 half-even
    assert ref.expert_capacity(12, _cfg(**f, eval_capacity_factor=0.5)) == 2  # 1.5
    assert ref.expert_capacity(12, _cfg(**f, eval_capacity_factor=0.5,
                                        capacity_rounding="ROUND_DOWN")) == 1
    assert ref.expert_capacity(6, _cfg(**dict(f, num_experts=3), eval_capacity_factor=1.4,
                                       capacity_rounding="ROUND_DOWN")) == 2  # floor 2.8
    assert ref.expert_capacity(4, _cfg(**dict(f, min_capacity=3), eval_capacity_factor=1.0)) == 3
    assert ref.expert_capacity(4, _cfg(**f, eval_capacity_factor=1.0,
                                       train_capacity_factor=9.0)) == 1  # eval factor used
    assert ref.expert_capacity(30, _cfg(capacity_mode="CAPACITY_FIXED", expert_capacity=2)) == 2
    assert ref.expert_capacity(30, _cfg(capacity_mode="CAPACITY_DROPLESS", expert_capacity=2)) == 30


def test_capacity_keep_mask_token_order():
    expert = np.array([0, 0, 1, 0, 0, 1, 2, 1, 1])
    groups = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1])
    kept = ref.capacity_keep_mask(expert, groups, 2, 3)
    assert kept.tolist() == [True, True, True, False, False, True, True, True, True]


@pytest.mark.parametrize("routing_group,group_size,capacity_per_group", [
    ("GROUP_SEQUENCE", 0, 3), ("GROUP_FIXED", 4, 3), ("GROUP_BATCH", 0, 3)])
def test_switch_ffn_keeps_exactly_capacity_in_token_order(routing_group, group_size,
                                                          capacity_per_group):
    # Zero router: uniform p, every tie goes to expert 0, so each group keeps exactly its
    # first `capacity` tokens; kept output = (1/E) * expert_0(x), dropped output = 0.
    B, T, d, E = 2, 6, 16, 4
    cfg = _cfg(num_experts=E, capacity_mode="CAPACITY_FIXED", expert_capacity=capacity_per_group,
               routing_group=routing_group, group_size=group_size, activation="RELU")
    rng = np.random.default_rng(0)
    params = {"mlp.router.classifier.weight": np.zeros((E, d))}
    for j in range(E):
        params[f"mlp.experts.expert_{j}.wi.weight"] = rng.standard_normal((32, d))
        params[f"mlp.experts.expert_{j}.wo.weight"] = rng.standard_normal((d, 32))
    x = rng.standard_normal((B, T, d))
    y, rec = ref.switch_ffn(x, params, "mlp.", cfg)
    size = {"GROUP_SEQUENCE": T, "GROUP_FIXED": group_size, "GROUP_BATCH": B * T}[routing_group]
    want_kept = (np.arange(B * T) % size) < capacity_per_group
    assert (rec.expert_index == 0).all()
    assert rec.kept.tolist() == want_kept.tolist()
    assert rec.kept_per_expert().tolist() == [want_kept.sum(), 0, 0, 0]
    flat_x, flat_y = x.reshape(B * T, d), y.reshape(B * T, d)
    expert0 = ref.dense_ffn(flat_x, params, "mlp.experts.expert_0.", "RELU")
    np.testing.assert_allclose(flat_y[want_kept], expert0[want_kept] / E, rtol=1e-12)
    assert (flat_y[~want_kept] == 0).all()


def _record(probs, expert, B, T):
    probs = np.asarray(probs, dtype=np.float64)
    N, E = probs.shape
    return ref.RoutingRecord(B, T, E, np.log(probs), probs, np.asarray(expert),
                             np.ones(N, bool), np.arange(N) // T, N)


def test_aux_loss_uniform_routing_equals_coefficient():
    # each token picks a different expert and every expert's mean probability is 1/E
    base = np.array([0.4, 0.3, 0.2, 0.1])
    probs = np.stack([np.roll(base, k) for k in range(4)])  # argmax of row k is k
    rec = _record(probs, np.argmax(probs, -1), 1, 4)
    cfg = _cfg(aux_loss_coef=0.01, z_loss_coef=0.0)
    aux, _ = ref.aux_losses_per_layer([rec], cfg)
    assert aux == pytest.approx(0.01, rel=1e-12)
    aux_hf, _ = ref.aux_losses_hf_concat([rec, rec], cfg)
    assert aux_hf == pytest.approx(0.01, rel=1e-12)


def test_aux_loss_collapsed_routing_equals_coefficient_times_experts():
    probs = np.tile([0.7, 0.1, 0.1, 0.1], (6, 1))
    rec = _record(probs, np.zeros(6, int), 2, 3)
    aux, _ = ref.aux_losses_per_layer([rec], _cfg(aux_loss_coef=0.01))
    assert aux == pytest.approx(0.01 * 4 * 0.7, rel=1e-12)


def test_hf_concat_counts_dropped_tokens_as_expert_0():
    probs = np.tile([0.1, 0.1, 0.1, 0.7], (4, 1))
    rec = _record(probs, np.full(4, 3), 1, 4)
    rec.kept = np.array([True, False, False, False])
    aux, _ = ref.aux_losses_hf_concat([rec], _cfg(aux_loss_coef=1.0))
    # f = [3/4, 0, 0, 1/4], P = [0.1, 0.1, 0.1, 0.7] -> 4 * (0.075 + 0.175) = 1.0
    assert aux == pytest.approx(1.0, rel=1e-12)
    aux_layer, _ = ref.aux_losses_per_layer([rec], _cfg(aux_loss_coef=1.0))
    assert aux_layer == pytest.approx(4 * 0.7, rel=1e-12)  # f before capacity


def test_z_loss_hand_value():
    rec = _record(np.full((5, 4), 0.25), np.zeros(5, int), 1, 5)
    rec.logits = np.zeros((5, 4))
    _, z = ref.aux_losses_per_layer([rec], _cfg(z_loss_coef=0.5))
    assert z == pytest.approx(0.5 * math.log(4) ** 2, rel=1e-12)


def _dense_model():
    overrides, gen, _ = mg.CONFIGS[0]
    assert overrides["name"] == "dense"
    cfg = dict(mg.BASE)
    cfg.update(overrides)
    rng = np.random.default_rng(7)
    params = mg.draw_params(cfg, rng, 1.0)
    inputs = mg.draw_inputs(cfg, rng, gen["B"], gen["Te"], gen["Td"])
    return cfg, params, inputs


def _run(cfg, params, i):
    return ref.forward(cfg, params, i["input.input_ids"], i["input.attention_mask"],
                       i["input.decoder_input_ids"], i["input.decoder_attention_mask"],
                       i["input.labels"])


def test_masked_encoder_key_is_ignored():
    cfg, params, inputs = _dense_model()
    base = _run(cfg, params, inputs)
    changed = {k: v.copy() for k, v in inputs.items()}
    row, col = 1, changed["input.attention_mask"].shape[1] - 1
    assert changed["input.attention_mask"][row, col] == 0
    changed["input.input_ids"][row, col] = 77
    res = _run(cfg, params, changed)
    keep = np.ones(base["encoder_output"].shape[1], bool)
    keep[col] = False
    np.testing.assert_array_equal(res["encoder_output"][row, keep], base["encoder_output"][row, keep])
    np.testing.assert_array_equal(res["logits"], base["logits"])


def test_decoder_is_causal():
    cfg, params, inputs = _dense_model()
    base = _run(cfg, params, inputs)
    changed = {k: v.copy() for k, v in inputs.items()}
    changed["input.decoder_input_ids"][0, -1] = 99
    res = _run(cfg, params, changed)
    np.testing.assert_array_equal(res["logits"][:, :-1], base["logits"][:, :-1])
    assert not np.array_equal(res["logits"][0, -1], base["logits"][0, -1])


def test_config_text_roundtrip():
    cfg = _cfg(name='a "q"', activation="GATED_GELU", norm_epsilon=1e-6, tie_word_embeddings=False)
    assert ref.config_from_text(ref.config_to_text(cfg)) == cfg
