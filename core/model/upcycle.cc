#include "core/model/upcycle.h"

#include <string>

#include "core/tensor/error.h"

namespace sw {
namespace {

// The dense parameter an upcycled one starts from: an expert's weight comes from its
// block's feed-forward ("...mlp.experts.expert_3.wi.weight" from "...mlp.wi.weight").
std::string dense_source(const std::string& name) {
  const size_t at = name.find(".mlp.experts.expert_");
  if (at == std::string::npos) return name;
  const size_t after = name.find('.', at + std::string(".mlp.experts.expert_").size());
  return name.substr(0, at) + ".mlp" + name.substr(after);
}

}  // namespace

SwitchTransformer upcycle(const SwitchTransformer& dense, const ModelConfig& sparse,
                          uint64_t seed) {
  SW_CHECK_ARG(!dense.expert_group() && !dense.model_group(),
               "upcycle: the dense model is one rank's share of a distributed model");
  const ModelConfig& d = dense.config();
  // The shapes both models must share, by field.
  const auto same = [&](const char* field, auto a, auto b) {
    SW_CHECK_ARG(a == b, "upcycle: ", field, " is ", b, " in the sparse config but ", a,
                 " in the dense model");
  };
  same("vocab_size", d.vocab_size(), sparse.vocab_size());
  same("d_model", d.d_model(), sparse.d_model());
  same("d_ff", d.d_ff(), sparse.d_ff());
  same("d_kv", d.d_kv(), sparse.d_kv());
  same("num_heads", d.num_heads(), sparse.num_heads());
  same("num_encoder_layers", d.num_encoder_layers(), sparse.num_encoder_layers());
  same("num_decoder_layers", d.num_decoder_layers(), sparse.num_decoder_layers());
  same("activation", ModelConfig::Activation_Name(d.activation()),
       ModelConfig::Activation_Name(sparse.activation()));
  same("tie_word_embeddings", d.tie_word_embeddings(), sparse.tie_word_embeddings());
  same("separate_input_embeddings", d.separate_input_embeddings(),
       sparse.separate_input_embeddings());
  same("relative_attention_num_buckets", d.relative_attention_num_buckets(),
       sparse.relative_attention_num_buckets());
  for (Stack s : {Stack::kEncoder, Stack::kDecoder})
    for (int64_t i = 0; i < num_layers(d, s); ++i)
      SW_CHECK_ARG(!is_sparse_block(d, s, i), "upcycle: ", stack_name(s), " block ", i,
                   " is sparse in the source model; upcycling starts from a dense model");
  SwitchTransformer out(sparse, seed);  // fresh routers; every other weight is copied below
  for (const auto& e : out.parameters().entries()) {
    if (e.name.find(".mlp.router.") != std::string::npos) continue;
    const std::string source = dense_source(e.name);
    SW_CHECK_ARG(dense.parameters().contains(source), "upcycle: the dense model has no ", source,
                 " for ", e.name);
    out.parameters().set(e.name, dense.parameters().get(source).to(Device::cpu()));
  }
  return out;
}

void init_from_teacher(const SwitchTransformer& teacher, SwitchTransformer& student) {
  int64_t copied = 0;
  for (const auto& e : student.parameters().entries()) {
    if (!teacher.parameters().contains(e.name)) continue;
    const Tensor& t = teacher.parameters().get(e.name);
    if (t.shape() != e.tensor.shape()) continue;
    student.parameters().set(e.name, t);
    ++copied;
  }
  SW_CHECK_ARG(copied > 0,
               "distill_teacher: the student shares no parameter (name and shape) "
               "with the teacher ",
               teacher.config().name(),
               "; distil into the teacher's dense "
               "twin (the same widths, sparse steps 0)");
}

}  // namespace sw
