// libswitch_spm.so: SentencePiece behind the plain C interface of sentencepiece_plugin.h
// (why it is a plugin is explained there). Exceptions never leave this file.
#include "core/data/sentencepiece_plugin.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace sentencepiece::logging {
void SetMinLogLevel(int level);  // exported by libsentencepiece, not in its headers
}

namespace {

char* copy_out(const std::string& s, size_t* length) {
  char* buffer = static_cast<char*>(std::malloc(s.size() + 1));
  if (!buffer) return nullptr;
  std::memcpy(buffer, s.data(), s.size());
  buffer[s.size()] = '\0';
  if (length) *length = s.size();
  return buffer;
}

int fail(char** error, const std::string& message) {
  if (error) *error = copy_out(message, nullptr);
  return 1;
}

// Documents become SentencePiece sentences one line at a time.
class LineIterator : public sentencepiece::SentenceIterator {
 public:
  explicit LineIterator(std::vector<std::string> lines) : lines_(std::move(lines)) {}
  bool done() const override { return index_ >= lines_.size(); }
  void Next() override { ++index_; }
  const std::string& value() const override { return lines_[index_]; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  std::vector<std::string> lines_;
  size_t index_ = 0;
};

int train(const char* const* documents, const size_t* document_lengths, size_t count,
          const char* const* keys, const char* const* values, size_t flag_count, char** model,
          size_t* model_length, char** error) {
  try {
    std::vector<std::string> lines;
    for (size_t d = 0; d < count; ++d) {
      const std::string text(documents[d], document_lengths[d]);
      size_t start = 0;
      while (start <= text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        if (end > start) lines.push_back(text.substr(start, end - start));
        start = end + 1;
      }
    }
    std::unordered_map<std::string, std::string> flags;
    for (size_t i = 0; i < flag_count; ++i) flags[keys[i]] = values[i];
    sentencepiece::logging::SetMinLogLevel(2);  // the library prints nothing of its own
    LineIterator iterator(std::move(lines));
    std::string serialized;
    const auto status = sentencepiece::SentencePieceTrainer::Train(flags, &iterator, &serialized);
    if (!status.ok()) return fail(error, status.ToString());
    *model = copy_out(serialized, model_length);
    return *model ? 0 : fail(error, "out of memory");
  } catch (const std::exception& e) {
    return fail(error, e.what());
  }
}

int load(const char* model, size_t model_length, void** processor, char** error) {
  try {
    auto p = std::make_unique<sentencepiece::SentencePieceProcessor>();
    const auto status = p->LoadFromSerializedProto(std::string(model, model_length));
    if (!status.ok()) return fail(error, status.ToString());
    *processor = p.release();
    return 0;
  } catch (const std::exception& e) {
    return fail(error, e.what());
  }
}

sentencepiece::SentencePieceProcessor& as_processor(void* p) {
  return *static_cast<sentencepiece::SentencePieceProcessor*>(p);
}

void destroy(void* processor) { delete &as_processor(processor); }

int piece_count(void* processor) { return as_processor(processor).GetPieceSize(); }

int encode(void* processor, const char* text, size_t text_length, int32_t** ids, size_t* count,
           char** error) {
  try {
    std::vector<int> out;
    const auto status = as_processor(processor).Encode(std::string(text, text_length), &out);
    if (!status.ok()) return fail(error, status.ToString());
    *ids = static_cast<int32_t*>(std::malloc(std::max<size_t>(1, out.size()) * sizeof(int32_t)));
    if (!*ids) return fail(error, "out of memory");
    for (size_t i = 0; i < out.size(); ++i) (*ids)[i] = out[i];
    *count = out.size();
    return 0;
  } catch (const std::exception& e) {
    return fail(error, e.what());
  }
}

int decode(void* processor, const int32_t* ids, size_t count, char** text, size_t* text_length,
           char** error) {
  try {
    std::string out;
    const auto status = as_processor(processor).Decode(std::vector<int>(ids, ids + count), &out);
    if (!status.ok()) return fail(error, status.ToString());
    *text = copy_out(out, text_length);
    return *text ? 0 : fail(error, "out of memory");
  } catch (const std::exception& e) {
    return fail(error, e.what());
  }
}

int id_to_piece(void* processor, int32_t id, char** piece, size_t* length) {
  const auto& p = as_processor(processor);
  *piece = copy_out(id >= 0 && id < p.GetPieceSize() ? p.IdToPiece(id) : std::string(), length);
  return *piece ? 0 : 1;
}

void release(void* buffer) { std::free(buffer); }

}  // namespace

extern "C" __attribute__((visibility("default"))) const SwSentencePieceApi* sw_sentencepiece_api(
    void) {
  static const SwSentencePieceApi api = {SW_SENTENCEPIECE_API_VERSION,
                                         train,
                                         load,
                                         destroy,
                                         piece_count,
                                         encode,
                                         decode,
                                         id_to_piece,
                                         release};
  return &api;
}
