"""The Python binding: configs, forward passes equal to the C ABI's bit for bit, errors,
training, checkpoints, generation, threads, and no native memory growth."""

import os
import resource
import subprocess
import sys
import threading

import numpy as np
import pytest

import libswitch as sw

# The batch tests/capi/forward_dump.c runs through the C ABI.
INPUT_IDS = (3 + (7 * np.arange(16)) % 300).reshape(2, 8)
ATTENTION_MASK = np.array([[1] * 7 + [0]] * 2)
DECODER_INPUT_IDS = np.array([[0, 10, 11, 12], [0, 20, 21, 22]])
LABELS = np.array([[10, 11, 12, 1], [20, 21, 22, 1]])
GPL = "/usr/share/common-licenses/GPL-3"


def tiny(seed=0, **fields):
    config = sw.Config.preset("tiny")
    config["dropout_rate"] = 0.0
    for name, value in fields.items():
        config[name] = value
    return sw.Model(config, seed=seed)


def forward(model, **kw):
    return model.forward(INPUT_IDS, DECODER_INPUT_IDS, attention_mask=ATTENTION_MASK,
                         labels=LABELS, **kw)


def test_version_and_presets():
    assert sw.__version__.count(".") == 2
    assert sw.ABI_VERSION == 1
    assert "tiny" in sw.presets() and "switch-base-8" in sw.presets()
    if not sw.cuda_built():
        assert sw.cuda_device_count() == 0


def test_import_shortens_openmp_spinning_unless_the_user_chose():
    script = "import os, libswitch; print(os.environ.get('GOMP_SPINCOUNT'))"
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    run = lambda extra: subprocess.run([sys.executable, "-c", script], env=dict(env, **extra),
                                       capture_output=True, text=True, check=True).stdout.strip()
    assert run({}) == "10000"
    assert run({"GOMP_SPINCOUNT": "500"}) == "500"
    assert run({"OMP_WAIT_POLICY": "passive"}) == "None"


def test_plan():
    table = sw.plan("gpus: 16 model_preset: 'switch-base-8'")
    assert table.startswith("switch-base-8 (") and "ep=16 does not divide the 8 experts" in table
    proto = sw.plan("gpus: 2 layout: 'ep=2'", format="proto")
    assert "layouts {" in proto and "ep: 2" in proto and "step_seconds:" in proto
    with pytest.raises(sw.InvalidArgumentError, match="gpus must be >= 1"):
        sw.plan("gpus: 0")
    with pytest.raises(sw.NotFoundError, match="no built-in rates"):
        sw.plan("gpu: 'v100'")
    with pytest.raises(sw.InvalidArgumentError, match="format: 'csv'"):
        sw.plan("", format="csv")


def test_config_round_trip_and_typed_fields():
    c = sw.Config.preset("switch-base-8")
    assert c["num_experts"] == 8 and c["activation"] == "RELU"
    c["num_experts"] = 16
    c["aux_loss_coef"] = 0.02
    c["capacity_mode"] = "CAPACITY_FIXED"
    c["tie_word_embeddings"] = False
    assert (c["num_experts"], c["aux_loss_coef"], c["capacity_mode"]) == (16, 0.02,
                                                                          "CAPACITY_FIXED")
    assert c["tie_word_embeddings"] is False
    text = c.to_text()
    assert sw.Config.from_text(text).to_text() == text
    t = sw.TrainConfig("steps: 7")
    t["model.num_experts"] = 4
    assert t["steps"] == 7 and t["model.num_experts"] == 4 and t["optimizer"] == "ADAFACTOR"


def test_config_errors_name_the_problem_and_change_nothing():
    c = sw.Config.preset("tiny")
    before = c.to_text()
    with pytest.raises(sw.InvalidArgumentError, match='no field "nope"'):
        c["nope"] = 1
    with pytest.raises(sw.InvalidArgumentError, match="is an integer, not a string"):
        c["num_experts"] = "8"
    with pytest.raises(sw.OutOfRangeError, match='"SWISH" is not a value'):
        c["activation"] = "SWISH"
    with pytest.raises(sw.InvalidArgumentError, match="cannot set a list"):
        c["num_experts"] = [1]
    assert c.to_text() == before
    c["num_experts"] = 0
    with pytest.raises(sw.InvalidArgumentError, match="num_experts"):
        c.validate()
    with pytest.raises(sw.InvalidArgumentError, match="num_experts"):
        sw.Model(c)
    with pytest.raises(sw.InvalidArgumentError, match="line 1"):
        sw.Config.from_text("num_experts: [")
    with pytest.raises(sw.NotFoundError, match="no-such-model"):
        sw.Config.preset("no-such-model")


def test_forward_equals_the_c_abi_bit_for_bit(tmp_path):
    dump = os.environ.get("SW_FORWARD_DUMP")
    if not dump:
        pytest.skip("SW_FORWARD_DUMP (tests/capi/forward_dump.c) not given")
    reference = subprocess.run([dump, "5", str(tmp_path / "logits")], check=True,
                               capture_output=True, text=True).stdout.split()
    with tiny(seed=5) as m:
        out = forward(m)
    expected = np.fromfile(tmp_path / "logits", dtype=np.float32).reshape(out.logits.shape)
    assert out.logits.tobytes() == expected.tobytes()
    assert [out.loss, out.ce_loss, out.aux_loss, out.z_loss] == [float(x) for x in reference]


def test_forward_outputs_and_routing():
    with tiny() as m:
        out = forward(m)
        assert out.logits.shape == (2, 4, 384) and out.logits.dtype == np.float32
        assert out.loss == pytest.approx(out.ce_loss + out.aux_loss + out.z_loss)
        assert len(out.routing) == 4
        for layer in out.routing:
            assert layer.tokens_per_expert.sum() == layer.tokens
            assert layer.num_experts == 8 and layer.stack in ("encoder", "decoder")
        assert sum(layer.aux_loss for layer in out.routing) == pytest.approx(out.aux_loss)
        no_labels = m.forward(INPUT_IDS, DECODER_INPUT_IDS)
        assert no_labels.ce_loss == 0.0


def test_bad_input_raises_with_the_argument_named():
    with tiny() as m:
        bad = INPUT_IDS.copy()
        bad[0, 3] = 384
        with pytest.raises(sw.OutOfRangeError, match="input_ids: token id 384"):
            m.forward(bad, DECODER_INPUT_IDS)
        with pytest.raises(sw.InvalidArgumentError, match="expected integers"):
            m.forward(INPUT_IDS.astype(np.float32), DECODER_INPUT_IDS)
        with pytest.raises(sw.InvalidArgumentError, match="attention_mask: shape"):
            m.forward(INPUT_IDS, DECODER_INPUT_IDS, attention_mask=np.ones((2, 7), dtype=int))
        with pytest.raises(sw.InvalidArgumentError, match="batch 1 differs"):
            m.forward(INPUT_IDS, DECODER_INPUT_IDS[:1])
        with pytest.raises(sw.InvalidArgumentError, match="attention_mask"):
            m.forward(INPUT_IDS, DECODER_INPUT_IDS, attention_mask=np.full((2, 8), 3))
        with pytest.raises(sw.NotFoundError, match="no.such"):
            m.get_parameter("no.such.weight")
        with pytest.raises(sw.InvalidArgumentError, match="expected shape"):
            m.set_parameter("shared.weight", np.zeros((3, 3)))
        with pytest.raises(sw.NotFoundError, match="no gradients yet"):
            m.gradient("shared.weight")
        with pytest.raises(sw.InvalidArgumentError, match="tpu"):
            sw.Model(sw.Config.preset("tiny"), device="tpu")
        if not sw.cuda_built():
            with pytest.raises(sw.UnsupportedError, match="built without CUDA"):
                sw.Model(sw.Config.preset("tiny"), device="cuda:0")
    with pytest.raises(sw.InvalidArgumentError, match="closed"):
        m.forward(INPUT_IDS, DECODER_INPUT_IDS)


def test_routing_variants_are_config_values():
    with tiny(num_selected_experts=2, normalize_gates=False) as m:
        assert m.config["num_selected_experts"] == 2
        out = forward(m, compute_gradients=True)
        assert np.isfinite(out.loss)
        g = m.gradient("encoder.block.1.layer.1.mlp.router.classifier.weight")
        assert np.abs(g).max() > 0
    with pytest.raises(sw.InvalidArgumentError, match="num_selected_experts"):
        tiny(num_selected_experts=99)
    # Expert choice: the experts pick their tokens (encoder only, no aux loss).
    with tiny(aux_loss_coef=0.0, decoder_sparse_step=0, routing="EXPERT_CHOICE") as m:
        out = forward(m, compute_gradients=True)
        assert np.isfinite(out.loss) and out.aux_loss == 0.0
        assert all(layer.stack == "encoder" for layer in out.routing)


def test_dtypes_and_copies():
    config = sw.Config.preset("tiny")
    m = sw.Model(config, seed=4, dtype="f64")
    assert m.dtype == "f64" and m.device == "cpu"
    c = m.copy_to("cpu")  # f32, the same weights rounded
    assert c.dtype == "f32" and c.seed == 4
    np.testing.assert_allclose(c.get_parameter("shared.weight"), m.get_parameter("shared.weight"),
                               rtol=1e-7)
    c.set_parameter("shared.weight", c.get_parameter("shared.weight") * 0)  # its own storage
    assert np.abs(m.get_parameter("shared.weight")).max() > 0
    with pytest.raises(sw.InvalidArgumentError, match='dtype: expected "f32", "f64" or "bf16"'):
        sw.Model(config, dtype="fp16")
    with pytest.raises(sw.UnsupportedError, match="bf16"):
        sw.Model(config, dtype="bf16")  # bf16 lives on a GPU


def test_parameters_and_gradients():
    with tiny() as m:
        names = m.parameter_names()
        assert sum(int(np.prod(m.parameter_shape(n))) for n in names) == m.num_parameters()
        w = m.get_parameter("shared.weight")
        m.set_parameter("shared.weight", w * 2)
        np.testing.assert_array_equal(m.get_parameter("shared.weight"), w * 2)
        forward(m, compute_gradients=True)
        g = m.gradient("encoder.block.1.layer.1.mlp.router.classifier.weight")
        assert g.shape == (8, 64) and np.isfinite(g).all() and np.abs(g).max() > 0


EXPERT = "encoder.block.1.layer.1.mlp.experts.expert_0.wi.weight"
DENSE = "decoder.block.0.layer.2.mlp.wo.weight"


def address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def test_dlpack_views_with_numpy_are_the_tensors_themselves():
    m = tiny()
    t = m.parameter(EXPERT)
    assert t.shape == m.parameter_shape(EXPERT) and t.dtype == "f32" and t.device == "cpu"
    assert t.__dlpack_device__() == (1, 0)
    view, again = t.numpy(), np.from_dlpack(t)
    assert address(view) == address(again)  # one memory, not two copies
    np.testing.assert_array_equal(view, m.get_parameter(EXPERT))
    view[0, 0] = 42.0  # t.numpy() is writable: the model changes
    assert m.get_parameter(EXPERT)[0, 0] == 42.0
    # The model's writes show through the view: a training step, then set_parameter.
    dense = np.from_dlpack(m.parameter(DENSE))
    before = dense.copy()
    with sw.Trainer(m, sw.TrainConfig("batch_size: 2")) as trainer:
        trainer.step({"input_ids": INPUT_IDS, "decoder_input_ids": DECODER_INPUT_IDS,
                      "labels": LABELS})
    assert not np.array_equal(dense, before)
    np.testing.assert_array_equal(dense, m.get_parameter(DENSE))
    m.set_parameter(EXPERT, np.full(t.shape, 0.25, np.float32))
    assert (view == 0.25).all()
    # Logits and gradients: the result's own arrays, equal to the copying calls.
    out = forward(m, compute_gradients=True)
    assert not out.logits.flags.owndata and out.logits.shape == (2, 4, 384)
    assert out.logits.flags.writeable
    grad = m.grad(DENSE).numpy()
    np.testing.assert_array_equal(grad, m.gradient(DENSE))
    assert address(grad) == address(m.grad(DENSE).numpy()) and np.abs(grad).max() > 0
    # The views outlive the model; the Tensor, a handle's view, does not export after it.
    m.close()
    assert view.sum() != 0 and np.isfinite(grad).all() and np.isfinite(out.logits).all()
    with pytest.raises(sw.InvalidArgumentError, match="closed"):
        t.numpy()
    with pytest.raises(BufferError, match="copy"):
        tiny().parameter(EXPERT).__dlpack__(copy=True)
    with pytest.raises(sw.NotFoundError, match="no.such"):
        tiny().parameter("no.such.weight")
    # An f64 model's views are f64.
    with sw.Model(sw.Config.preset("tiny"), dtype="f64") as wide:
        t64 = wide.parameter(EXPERT)
        assert t64.dtype == "f64" and t64.numpy().dtype == np.float64


def test_a_trainer_refuses_init_from_by_name():
    with tiny() as m, pytest.raises(sw.UnsupportedError, match="init_from"):
        sw.Trainer(m, sw.TrainConfig('init_from: "runs/x/checkpoints"'))


def test_dlpack_with_torch_on_the_cpu():
    torch = pytest.importorskip("torch", reason="torch is not installed (PyPI's wheel is "
                                "several GB with its CUDA packages; scripts/setup leaves it out)")
    with tiny() as m:
        weights = torch.from_dlpack(m.parameter(EXPERT))
        view = np.from_dlpack(m.parameter(EXPERT))
        assert weights.data_ptr() == address(view) and weights.dtype == torch.float32
        weights[0, 0] = 42.0  # torch's tensors are writable: the model changes
        assert m.get_parameter(EXPERT)[0, 0] == 42.0
        # torch tensors in: ids (int64, converted to the ABI's int32) and parameter values.
        out = m.forward(torch.from_numpy(INPUT_IDS), torch.from_numpy(DECODER_INPUT_IDS),
                        labels=torch.from_numpy(LABELS))
        assert out.loss == m.forward(INPUT_IDS, DECODER_INPUT_IDS, labels=LABELS).loss
        m.set_parameter(EXPERT, torch.zeros(tuple(weights.shape)))
        assert weights.abs().sum().item() == 0
        logits = torch.from_dlpack(out.logits)
        assert logits.data_ptr() == address(out.logits)


def test_distillation_through_the_train_config(tmp_path):
    with tiny() as teacher:
        path = teacher.save(tmp_path / "teacher")
        teacher_embedding = teacher.get_parameter("shared.weight")
    batch = {"input_ids": INPUT_IDS, "decoder_input_ids": DECODER_INPUT_IDS, "labels": LABELS,
             "attention_mask": ATTENTION_MASK}
    train = sw.TrainConfig(f"batch_size: 2 distill_teacher: '{path}'")
    with tiny(seed=3, encoder_sparse_step=0, decoder_sparse_step=0) as student, \
            sw.Trainer(student, train) as t:
        np.testing.assert_array_equal(student.get_parameter("shared.weight"), teacher_embedding)
        assert np.isfinite(t.step(batch).loss)
    with tiny(vocab_size=640, encoder_sparse_step=0, decoder_sparse_step=0) as other:
        with pytest.raises(sw.InvalidArgumentError, match="the teacher's vocabulary"):
            sw.Trainer(other, train)


def test_training_lowers_the_loss_and_checkpoints_round_trip(tmp_path):
    with tiny() as m:
        train = sw.TrainConfig("optimizer: ADAMW learning_rate: 0.003 batch_size: 2")
        batch = {"input_ids": INPUT_IDS, "decoder_input_ids": DECODER_INPUT_IDS,
                 "labels": LABELS, "attention_mask": ATTENTION_MASK}
        with sw.Trainer(m, train) as t:
            first = t.step(batch)
            for _ in range(9):
                last = t.step(batch)
            assert last.step == 10 and last.loss < first.loss - 0.5
            assert t.evaluate(batch).loss < first.loss
            saved = t.save(tmp_path / "run")
            assert saved.endswith("step-00000010")
        before = forward(m).logits
        path = m.save(tmp_path / "model")
    with sw.Model.load(path) as loaded:
        np.testing.assert_array_equal(forward(loaded).logits, before)
    with sw.Trainer.restore(tmp_path / "run") as t:
        assert t.step(batch).step == 11
    # One flipped byte in a shard: refused, naming the checksum; in the manifest: too.
    shard = next(p for p in os.scandir(path) if p.name.endswith(".bin"))
    flip_byte(shard.path, 100)
    with pytest.raises(sw.CorruptError, match="checksum"):
        sw.Model.load(path)
    flip_byte(shard.path, 100)
    flip_byte(os.path.join(path, "manifest.pb"), 10)
    with pytest.raises(sw.CorruptError, match="manifest"):
        sw.Model.load(path)


def shard_safetensors(source, directory, shards=2):
    """HF's sharded layout of one safetensors file: model-0000K-of-0000N.safetensors and
    model.safetensors.index.json (the weight map), written with the format's own framing
    (an 8-byte little-endian header length, a JSON header, then the bytes)."""
    import json
    import struct
    blob = open(source, "rb").read()
    (length,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + length])
    header.pop("__metadata__", None)
    data, names = blob[8 + length:], sorted(header)
    os.makedirs(directory, exist_ok=True)
    weight_map = {}
    for k in range(shards):
        file = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        part, chunks, offset = {}, [], 0
        for name in names[k::shards]:
            begin, end = header[name]["data_offsets"]
            part[name] = dict(header[name], data_offsets=[offset, offset + end - begin])
            chunks.append(data[begin:end])
            offset += end - begin
            weight_map[name] = file
        head = json.dumps(part).encode()
        head += b" " * (-len(head) % 8)
        with open(os.path.join(directory, file), "wb") as f:
            f.write(struct.pack("<Q", len(head)) + head + b"".join(chunks))
    with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": len(data)}, "weight_map": weight_map}, f)


def test_from_pretrained_takes_hf_directories_checkpoints_and_runs(tmp_path):
    with tiny() as m:
        expected = forward(m).logits
        m.save_pretrained(tmp_path / "hf", allow_routing_change=True)
        step_dir = m.save(tmp_path / "root")
    with sw.Trainer(tiny(), sw.TrainConfig("batch_size: 2")) as t:
        t.save(tmp_path / "run" / "checkpoints")  # the layout of `switch train --out run`
        run_logits = forward(t.model).logits
    assert os.path.exists(tmp_path / "hf" / "config.json")
    # The same model as HF shards it: two files and their index, beside config.json.
    shard_safetensors(tmp_path / "hf" / "model.safetensors", tmp_path / "sharded")
    os.link(tmp_path / "hf" / "config.json", tmp_path / "sharded" / "config.json")
    assert sorted(os.listdir(tmp_path / "sharded")) == [
        "config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
        "model.safetensors.index.json"]
    for path, want in [(tmp_path / "hf", expected), (tmp_path / "sharded", expected),
                       (step_dir, expected),
                       (tmp_path / "root", expected), (tmp_path / "run", run_logits)]:
        with sw.Model.from_pretrained(path) as loaded:
            np.testing.assert_allclose(forward(loaded).logits, want, rtol=0, atol=1e-5)
    (tmp_path / "empty").mkdir()
    with pytest.raises(sw.NotFoundError, match="no config.json"):
        sw.Model.from_pretrained(tmp_path / "empty")


def test_fit_runs_callbacks_and_shows_progress(tmp_path, capsys, monkeypatch):
    batch = {"input_ids": INPUT_IDS, "decoder_input_ids": DECODER_INPUT_IDS,
             "labels": LABELS, "attention_mask": ATTENTION_MASK}
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # the plain lines, not tqdm's bar

    class StopAt(sw.Callback):
        def on_step(self, trainer, metrics):
            return metrics.step == 4

    with tiny() as m, sw.Trainer(m, sw.TrainConfig("batch_size: 2")) as t:
        saves, evals = sw.CheckpointEvery(2, tmp_path / "ckpt"), sw.EvaluateEvery(1, batch)
        steps = t.fit(3, [batch] * 3, callbacks=[saves, evals])
        assert [s.step for s in steps] == [1, 2, 3]
        assert [s for s, _ in evals.results] == [1, 2, 3]
        assert [os.path.basename(p) for p in saves.saved] == ["step-00000002", "step-00000003"]
        out = capsys.readouterr().out
        assert "step 1 (1/3) loss" in out and "step 3 (3/3) loss" in out
        assert len(t.fit(5, [batch] * 5, callbacks=[StopAt()], progress=False)) == 1  # step 4
        assert len(t.fit(5, [batch] * 2, progress=False)) == 2  # out of batches
        t.fit(0, callbacks=[saves])  # no step: nothing saved again
        assert len(saves.saved) == 2
        assert capsys.readouterr().out == ""
        with pytest.raises(sw.InvalidArgumentError, match="every must be >= 1"):
            sw.CheckpointEvery(0, tmp_path)


def test_fit_shows_tqdms_bar_where_installed(capsys):
    import tqdm  # noqa: F401 - scripts/setup installs it
    batch = {"input_ids": INPUT_IDS, "decoder_input_ids": DECODER_INPUT_IDS,
             "labels": LABELS, "attention_mask": ATTENTION_MASK}
    with tiny() as m, sw.Trainer(m, sw.TrainConfig("batch_size: 2")) as t:
        t.fit(2, [batch] * 2)
    captured = capsys.readouterr()
    assert "2/2" in captured.err and "loss=" in captured.err and captured.out == ""


def test_trainer_logs_to_tensorboard(tmp_path):
    from tensorboard.backend.event_processing import event_accumulator
    batch = {"input_ids": INPUT_IDS, "decoder_input_ids": DECODER_INPUT_IDS,
             "labels": LABELS, "attention_mask": ATTENTION_MASK}
    with tiny() as m, sw.Trainer(m, sw.TrainConfig("batch_size: 2")) as t:
        t.step(batch)  # before log_to: not written
        t.log_to(tmp_path / "tb")
        steps = [t.step(batch), t.step(batch)]
        evaluated = t.evaluate(batch)
        t.log_to(None)
        t.step(batch)  # after: not written
    acc = event_accumulator.EventAccumulator(str(tmp_path / "tb"),
                                             size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    f32 = lambda x: float(np.float32(x))  # an event holds float32
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == \
        [(s.step, f32(s.loss)) for s in steps]
    assert [e.value for e in acc.Scalars("train/lr")] == [f32(s.learning_rate) for s in steps]
    assert [(e.step, e.value) for e in acc.Scalars("eval/ce")] == [(3, f32(evaluated.ce))]
    loads = acc.Histograms("load/encoder.1")  # tiny's first sparse encoder block
    assert [h.step for h in loads] == [2, 3]
    assert all(sum(h.histogram_value.bucket) > 0 for h in loads)
    with pytest.raises(sw.IOError, match="cannot create"):
        with tiny() as m, sw.Trainer(m, sw.TrainConfig("batch_size: 2")) as t:
            (tmp_path / "file").write_text("")
            t.log_to(tmp_path / "file" / "tb")


def flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x20]))


def test_more_bad_input_is_refused_and_changes_nothing(tmp_path):
    with tiny() as m:
        before = forward(m).logits
        # An empty batch, and ids of the wrong dtype.
        with pytest.raises(sw.InvalidArgumentError, match="batch must be >= 1"):
            m.forward(INPUT_IDS[:0], DECODER_INPUT_IDS[:0])
        with pytest.raises(sw.InvalidArgumentError):
            m.forward(INPUT_IDS.astype(np.complex64), DECODER_INPUT_IDS)
        with pytest.raises(sw.OutOfRangeError, match="decoder_input_ids"):
            m.forward(INPUT_IDS, -DECODER_INPUT_IDS - 1)
        # A checkpoint of another model: strict loading names the mismatch, nothing changes.
        wider = sw.Config.preset("tiny")
        wider["d_ff"] = 128
        with sw.Model(wider) as other:
            path = other.save(tmp_path / "other")
        with pytest.raises(sw.Error, match="wi.weight"):
            m.load_parameters(path)
        # A parameter set with values of the wrong dtype or shape.
        with pytest.raises(sw.InvalidArgumentError):
            m.set_parameter("shared.weight", np.zeros((3,), dtype=np.float32))
        np.testing.assert_array_equal(forward(m).logits, before)


def test_built_in_data_training():
    text = (f'corpus: "{GPL}" tokenizer_vocab_size: 400 batch_size: 2 input_length: 32 '
            'target_length: 12 eval_batches: 1')
    with tiny(vocab_size=512) as m, sw.Trainer(m, sw.TrainConfig(text)) as t:
        losses = [t.step().loss for _ in range(3)]
        assert all(np.isfinite(losses))
        assert t.evaluate().tokens > 0


def test_hf_round_trip(tmp_path):
    with tiny() as m:
        with pytest.raises(sw.UnsupportedError, match="capacity_mode CAPACITY_FACTOR"):
            m.export_hf(tmp_path)
        m.export_hf(tmp_path, allow_routing_change=True)
        with sw.Model.import_hf(tmp_path / "config.json", tmp_path) as imported:
            np.testing.assert_array_equal(forward(imported).logits, forward(m).logits)


def test_generate():
    with tiny() as m:
        out = m.generate(INPUT_IDS, attention_mask=ATTENTION_MASK, max_new_tokens=5)
        assert len(out) == 2 and all(len(o) <= 5 and (o != 1).all() for o in out)
        again = m.generate(INPUT_IDS, attention_mask=ATTENTION_MASK, max_new_tokens=5)
        assert all((a == b).all() for a, b in zip(out, again))
        beams = m.generate(INPUT_IDS, attention_mask=ATTENTION_MASK, max_new_tokens=5,
                           num_beams=4)
        assert len(beams) == 2 and all(len(b) <= 5 for b in beams)
        early = m.generate(INPUT_IDS, attention_mask=ATTENTION_MASK, max_new_tokens=5,
                           num_beams=4, early_stopping=True)
        assert len(early) == 2 and all(len(b) <= 5 for b in early)
        sampled = m.generate(INPUT_IDS, max_new_tokens=5, temperature=0.9, top_k=20, seed=3)
        again = m.generate(INPUT_IDS, max_new_tokens=5, temperature=0.9, top_k=20, seed=3)
        assert all((a == b).all() for a, b in zip(sampled, again))
        with pytest.raises(sw.InvalidArgumentError, match="top_p"):
            m.generate(INPUT_IDS, temperature=1.0, top_p=2.0)


def test_validate_against_a_device():
    with tiny() as m:
        with pytest.raises(sw.InvalidArgumentError, match="must not be the cpu"):
            m.validate(INPUT_IDS, DECODER_INPUT_IDS, device="cpu")
        with pytest.raises(sw.InvalidArgumentError, match="dtype"):
            m.validate(INPUT_IDS, DECODER_INPUT_IDS, dtype="f16")
        if sw.cuda_device_count() == 0:
            with pytest.raises(sw.Error):  # no device (or no CUDA): said, not skipped silently
                m.validate(INPUT_IDS, DECODER_INPUT_IDS)
        else:
            report, within = m.validate(INPUT_IDS, DECODER_INPUT_IDS,
                                        attention_mask=ATTENTION_MASK, labels=LABELS)
            assert within and "logits" in report


def test_generate_is_cancelled_from_another_thread():
    with tiny() as m, sw.Cancel() as cancel:
        assert not cancel.requested
        timer = threading.Timer(0.2, cancel.request)
        timer.start()
        # eos cannot end a row before 65536 tokens: only the cancel stops this call
        with pytest.raises(sw.CancelledError, match="generate: cancelled after"):
            m.generate(INPUT_IDS, max_new_tokens=65536, min_new_tokens=65536, cancel=cancel)
        timer.join()
        assert cancel.requested
        with pytest.raises(sw.CancelledError, match="cancelled after 0 of at most 3"):
            m.generate(INPUT_IDS, max_new_tokens=3, min_new_tokens=3, cancel=cancel)
        cancel.reset()
        assert [len(o) for o in m.generate(INPUT_IDS, max_new_tokens=3, min_new_tokens=3,
                                           cancel=cancel)] == [3, 3]


def test_concurrent_forwards_from_python_threads():
    with tiny() as m:
        expected = forward(m).logits
        results = [None] * 4

        def run(i):
            results[i] = forward(m).logits

        threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for r in results:
            np.testing.assert_array_equal(r, expected)


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def test_create_destroy_1000_times_does_not_grow():
    config = sw.Config.preset("tiny")
    config["num_encoder_layers"] = 1
    config["num_decoder_layers"] = 1
    for _ in range(100):  # warm the allocators
        sw.Model(config).close()
    before = rss_mib()
    for _ in range(1000):
        with sw.Model(config) as m:
            m.forward(INPUT_IDS, DECODER_INPUT_IDS)
        sw.Config.preset("tiny").close()
    growth = rss_mib() - before
    assert growth < 8, f"resident memory grew {growth:.1f} MiB over 1000 models"
