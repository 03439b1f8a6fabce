#include "core/train/pretraining_pipeline.h"

#include "core/data/corpus.h"
#include "core/tensor/error.h"

namespace sw {
namespace {

std::vector<int32_t> encode_all(const SentencePieceTokenizer& t,
                                const std::vector<std::string>& documents) {
  std::vector<int32_t> stream;
  for (const std::string& d : documents) {
    const std::vector<int32_t> ids = t.encode_text(d);
    stream.insert(stream.end(), ids.begin(), ids.end());
  }
  return stream;
}

}  // namespace

PretrainingPipeline::PretrainingPipeline(const TrainConfig& config) : config_(config) {
  validate(config_);
  const CorpusSplit split = split_documents(read_documents(config_.corpus()),
                                            config_.validation_fraction(), config_.seed());
  train_documents_ = static_cast<int64_t>(split.train.size());
  validation_documents_ = static_cast<int64_t>(split.validation.size());
  if (config_.tokenizer_model().empty()) {
    SentencePieceOptions o;
    o.vocab_size = config_.tokenizer_vocab_size();
    o.character_coverage = config_.tokenizer_character_coverage();
    o.num_sentinels = config_.num_sentinels();
    tokenizer_ =
        std::make_unique<SentencePieceTokenizer>(SentencePieceTokenizer::train(split.train, o));
  } else {
    tokenizer_ = std::make_unique<SentencePieceTokenizer>(
        SentencePieceTokenizer::load(config_.tokenizer_model(), config_.num_sentinels()));
  }

  PretrainingDataOptions data;
  data.input_length = config_.input_length();
  data.target_length = config_.target_length();
  data.noise_density = config_.noise_density();
  data.mean_noise_span_length = config_.mean_noise_span_length();
  data.seed = config_.seed();
  std::vector<int32_t> stream = encode_all(*tokenizer_, split.train);
  train_tokens_ = static_cast<int64_t>(stream.size());
  train_data_ = std::make_unique<SpanCorruptionData>(std::move(stream), tokenizer_->vocab_size(),
                                                     tokenizer_->num_sentinels(), data);
  data.shuffle = false;
  held_out_ = std::make_unique<SpanCorruptionData>(encode_all(*tokenizer_, split.validation),
                                                   tokenizer_->vocab_size(),
                                                   tokenizer_->num_sentinels(), data);
}

void PretrainingPipeline::check_model(const ModelConfig& model) const {
  SW_CHECK_ARG(model.vocab_size() >= tokenizer_->vocab_size(), "the model's vocab_size ",
               model.vocab_size(), " cannot hold the tokenizer's ", tokenizer_->vocab_size(),
               " ids");
}

Batch PretrainingPipeline::next_batch(const ModelConfig& model) {
  return train_data_->next_batch(config_.batch_size(), model);
}

std::vector<Batch> PretrainingPipeline::eval_batches(const ModelConfig& model) const {
  std::vector<Batch> batches;
  for (int64_t b = 0; b < config_.eval_batches(); ++b) {
    std::vector<Seq2SeqExample> examples;
    for (int64_t i = 0; i < config_.batch_size(); ++i)
      examples.push_back(held_out_->example(
          {0, (b * config_.batch_size() + i) % held_out_->examples_per_epoch()}));
    batches.push_back(
        make_seq2seq_batch(examples, config_.input_length(), config_.target_length(), model));
  }
  return batches;
}

}  // namespace sw
