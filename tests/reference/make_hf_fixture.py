#!/usr/bin/env python3
"""Writes the HF parity fixture: a tiny random SwitchTransformers model as HF saves it
(config.json + model.safetensors), a batch, and what HF computes on it in eval mode
(logits, cross-entropy, the aux and z losses of each stack). Run by hand, with PyPI's
torch, transformers and safetensors; the output is checked in and read by
tests/cpp/hf_parity_test.cc, which imports the model and must match.

usage: make_hf_fixture.py [OUT_DIR]   (default: tests/reference/hf_fixture)
       make_hf_fixture.py --generate [OUT_DIR]
       make_hf_fixture.py --varied-generation [OUT_DIR]  (default: .../hf_generate_fixture)
       make_hf_fixture.py --untied [OUT_DIR]             (default: .../hf_untied_fixture)
The second form leaves the model and the forward outputs as they are and adds
expected_generate.json: HF `generate` on the fixture's batch (greedy, and beam search),
read by tests/cpp/hf_parity_test.cc. The third writes a model whose generations vary: its
weights scaled up so the tokens depend on the input, and the eos logit raised so rows end
at different steps and more beam hypotheses finish than there are beams; the seed is the
first whose greedy and beam-search outputs (early_stopping false and true) show all that.
The fourth is the first with tie_word_embeddings false: transformers 5 then gives each
stack its own input embedding and an lm_head of its own, all drawn separately.
"""
import json
import os
import sys

import numpy as np
import safetensors.numpy
import torch
import transformers
from transformers import SwitchTransformersConfig, SwitchTransformersForConditionalGeneration


def main(untied=False):
    args = [a for a in sys.argv[1:] if a != "--untied"]
    name = "hf_untied_fixture" if untied else "hf_fixture"
    out = args[0] if args else os.path.join(os.path.dirname(__file__), name)
    torch.manual_seed(0)
    config = SwitchTransformersConfig(
        tie_word_embeddings=not untied,
        vocab_size=128, d_model=32, d_kv=8, d_ff=64, num_heads=4,
        num_layers=4, num_decoder_layers=4, num_sparse_encoder_layers=2,
        num_sparse_decoder_layers=2, num_experts=4,
        expert_capacity=3,  # 12 tokens per sequence over 4 experts: some are dropped
        router_jitter_noise=0.01, dropout_rate=0.1,
        router_z_loss_coef=0.001, router_aux_loss_coef=0.001, decoder_start_token_id=0)
    model = SwitchTransformersForConditionalGeneration(config).eval()
    model.save_pretrained(out, safe_serialization=True)

    input_ids = torch.randint(2, 128, (2, 12))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 9:] = 0  # padding in the second sequence
    labels = torch.randint(2, 128, (2, 6))
    labels[1, 4:] = -100
    decoder_input_ids = model._shift_right(labels)
    with torch.no_grad():
        o = model(input_ids=input_ids, attention_mask=attention_mask,
                  decoder_input_ids=decoder_input_ids, labels=labels,
                  output_router_logits=True, return_dict=True)
        ce = torch.nn.functional.cross_entropy(
            o.logits.reshape(-1, config.vocab_size), labels.reshape(-1), ignore_index=-100)
    safetensors.numpy.save_file(
        {"input_ids": input_ids.numpy().astype(np.int32),
         "attention_mask": attention_mask.numpy().astype(np.int32),
         "decoder_input_ids": decoder_input_ids.numpy().astype(np.int32),
         "labels": labels.numpy().astype(np.int32),
         "logits": o.logits.numpy().astype(np.float32)},
        os.path.join(out, "expected.safetensors"))
    expected = {
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "loss": o.loss.item(),
        "ce": ce.item(),
        "encoder_aux_loss": o.encoder_aux_loss.item(),
        "decoder_aux_loss": o.decoder_aux_loss.item(),
        "encoder_z_loss": o.encoder_z_loss.item(),
        "decoder_z_loss": o.decoder_z_loss.item(),
        "router_aux_loss_coef": config.router_aux_loss_coef,
        "router_z_loss_coef": config.router_z_loss_coef,
    }
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=2)
        f.write("\n")
    print(json.dumps(expected, indent=2))


MAX_NEW_TOKENS = 10


def generate():
    """HF generate with the fixture's model on its input batch (padding included)."""
    args = [a for a in sys.argv[1:] if a != "--generate"]
    out = args[0] if args else os.path.join(os.path.dirname(__file__), "hf_fixture")
    model = SwitchTransformersForConditionalGeneration.from_pretrained(out).eval()
    data = safetensors.numpy.load_file(os.path.join(out, "expected.safetensors"))
    input_ids = torch.tensor(data["input_ids"], dtype=torch.long)
    attention_mask = torch.tensor(data["attention_mask"], dtype=torch.long)
    result = {"transformers_version": transformers.__version__,
              "torch_version": torch.__version__, "max_new_tokens": MAX_NEW_TOKENS}
    with torch.no_grad():
        for name, options in [("greedy", {"num_beams": 1, "do_sample": False}),
                              ("beam3", {"num_beams": 3, "do_sample": False,
                                         "length_penalty": 1.0, "early_stopping": True})]:
            ids = model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                 max_new_tokens=MAX_NEW_TOKENS, **options)
            # Without the decoder start token; ended at eos (1), which is not included.
            rows = []
            for row in ids[:, 1:].tolist():
                rows.append(row[:row.index(1)] if 1 in row else row)
            result[name] = rows
    with open(os.path.join(out, "expected_generate.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(json.dumps(result, indent=2))


VARIED_NEW_TOKENS = 12


def varied_case(seed):
    """A random model made to generate varied, differently long rows; None if this seed's
    outputs do not show what the test needs."""
    torch.manual_seed(seed)
    config = SwitchTransformersConfig(
        vocab_size=48, d_model=32, d_kv=8, d_ff=64, num_heads=4, num_layers=2,
        num_decoder_layers=2, num_sparse_encoder_layers=1, num_sparse_decoder_layers=1,
        num_experts=4, expert_capacity=8, dropout_rate=0.0, decoder_start_token_id=0,
        eos_token_id=1, pad_token_id=0)
    model = SwitchTransformersForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embed" in name or "shared" in name or name.endswith(("wi.weight", "wo.weight")):
                p.mul_(4.0)
        model.shared.weight[1] += 0.5 * model.shared.weight[1].abs().mean()
    input_ids = torch.randint(2, 48, (3, 9))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[2, 6:] = 0
    runs = {"greedy": {"num_beams": 1},
            "beam3": {"num_beams": 3, "length_penalty": 1.0, "early_stopping": False},
            "beam3_early": {"num_beams": 3, "length_penalty": 1.0, "early_stopping": True},
            "beam4_penalty": {"num_beams": 4, "length_penalty": 0.6, "early_stopping": False}}
    result = {}
    with torch.no_grad():
        for name, options in runs.items():
            ids = model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                 max_new_tokens=VARIED_NEW_TOKENS, do_sample=False, **options)
            rows = []
            for row in ids[:, 1:].tolist():
                rows.append(row[:row.index(1)] if 1 in row else row)
            result[name] = rows
    greedy_lengths = {len(r) for r in result["greedy"]}
    varied = all(len(set(r)) > 2 for r in result["greedy"] if len(r) > 3)
    if (len(greedy_lengths) < 3 or max(greedy_lengths) >= VARIED_NEW_TOKENS or not varied
            or result["beam3"] == result["beam3_early"]):
        return None
    return model, input_ids, attention_mask, result


def varied_generation():
    args = [a for a in sys.argv[1:] if a != "--varied-generation"]
    out = args[0] if args else os.path.join(os.path.dirname(__file__), "hf_generate_fixture")
    for seed in range(2000):
        case = varied_case(seed)
        if case:
            break
    else:
        sys.exit("no seed in 0..1999 gives varied generations")
    model, input_ids, attention_mask, result = case
    model.save_pretrained(out, safe_serialization=True)
    safetensors.numpy.save_file(
        {"input_ids": input_ids.numpy().astype(np.int32),
         "attention_mask": attention_mask.numpy().astype(np.int32)},
        os.path.join(out, "inputs.safetensors"))
    result = {"transformers_version": transformers.__version__, "torch_version": torch.__version__,
              "seed": seed, "max_new_tokens": VARIED_NEW_TOKENS, **result}
    with open(os.path.join(out, "expected_generate.json"), "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(json.dumps(result))


if __name__ == "__main__":
    if "--varied-generation" in sys.argv:
        varied_generation()
    elif "--generate" in sys.argv:
        generate()
    else:
        main(untied="--untied" in sys.argv)
