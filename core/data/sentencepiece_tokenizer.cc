#include "core/data/sentencepiece_tokenizer.h"

#include <dlfcn.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/data/sentencepiece_plugin.h"
#include "core/tensor/error.h"

namespace sw {
namespace {

#ifdef SW_WITH_SENTENCEPIECE
constexpr const char* kPluginName = "libswitch_spm.so";

// SW_SENTENCEPIECE_PLUGIN, else the first that exists of: next to the object holding this
// code (libswitch.so), and <folder of that object>/../lib or ../<install libdir> (a
// program linking the core, in the build tree or installed).
std::string plugin_path() {
  if (const char* env = std::getenv("SW_SENTENCEPIECE_PLUGIN")) return env;
  Dl_info info{};
  if (!dladdr(reinterpret_cast<void*>(&sentencepiece_available), &info) || !info.dli_fname)
    return kPluginName;
  const std::filesystem::path folder = std::filesystem::path(info.dli_fname).parent_path();
  std::error_code ec;
  for (const std::filesystem::path& dir :
       {folder, folder / ".." / "lib", folder / ".." / SW_INSTALL_LIBDIR})
    if (std::filesystem::exists(dir / kPluginName, ec)) return (dir / kPluginName).string();
  return (folder / kPluginName).string();  // named in the error that follows
}
#endif

struct Plugin {
  const SwSentencePieceApi* api = nullptr;
  std::string error;
};

const Plugin& plugin() {
  static const Plugin loaded = [] {
    Plugin p;
#ifndef SW_WITH_SENTENCEPIECE
    p.error = "libswitch was built without SentencePiece (install libsentencepiece-dev)";
#else
    const std::string path = plugin_path();
    // DEEPBIND: SentencePiece must bind to its own protobuf, not the process's.
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!handle) {
      p.error = "cannot load the SentencePiece plugin " + path + ": " + dlerror() +
                " (set SW_SENTENCEPIECE_PLUGIN to its path)";
      return p;
    }
    using Entry = const SwSentencePieceApi* (*)();
    auto entry = reinterpret_cast<Entry>(dlsym(handle, "sw_sentencepiece_api"));
    if (!entry || !entry() || entry()->version != SW_SENTENCEPIECE_API_VERSION) {
      p.error = path + " is not a SentencePiece plugin of this libswitch version";
      dlclose(handle);
      return p;
    }
    p.api = entry();
#endif
    return p;
  }();
  return loaded;
}

const SwSentencePieceApi& api() {
  const Plugin& p = plugin();
  SW_CHECK(p.api, Status::kUnsupported, "SentencePiece: ", p.error);
  return *p.api;
}

// Takes ownership of a plugin buffer and its error message.
std::string take(char* buffer, size_t length) {
  std::string s(buffer ? buffer : "", buffer ? length : 0);
  api().release(buffer);
  return s;
}

// `error` by reference: it is read after the call that sets it (an argument passed by value
// could be read before the call beside it runs, and the message lost).
void check(int rc, char* const& error, const char* what) {
  if (rc == 0) return;
  const std::string message = error ? take(error, std::strlen(error)) : "unknown error";
  throw Error(Status::kInvalidArgument, std::string("SentencePiece ") + what + ": " + message);
}

std::string format_number(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

}  // namespace

bool sentencepiece_available(std::string* why_not) {
  const Plugin& p = plugin();
  if (!p.api && why_not) *why_not = p.error;
  return p.api != nullptr;
}

SentencePieceTokenizer SentencePieceTokenizer::train(const std::vector<std::string>& documents,
                                                     const SentencePieceOptions& o) {
  SW_CHECK_ARG(!documents.empty(), "SentencePiece training: no documents");
  SW_CHECK_ARG(o.vocab_size >= 8 && o.vocab_size <= (1 << 24),
               "SentencePiece training: vocab_size must be in [8, 2^24], got ", o.vocab_size);
  SW_CHECK_ARG(o.num_sentinels >= 0 && o.num_sentinels <= 10000,
               "SentencePiece training: num_sentinels must be in [0, 10000], got ",
               o.num_sentinels);
  SW_CHECK_ARG(o.num_threads >= 1, "SentencePiece training: num_threads must be >= 1");
  SW_CHECK_ARG(o.character_coverage > 0 && o.character_coverage <= 1,
               "SentencePiece training: character_coverage must be in (0, 1]");
  const std::vector<std::pair<std::string, std::string>> flags = {
      {"vocab_size", std::to_string(o.vocab_size)},
      {"model_type", o.model_type},
      {"character_coverage", format_number(o.character_coverage)},
      {"byte_fallback", o.byte_fallback ? "true" : "false"},
      {"pad_id", "0"},
      {"eos_id", "1"},
      {"unk_id", "2"},
      {"bos_id", "-1"},
      {"num_threads", std::to_string(o.num_threads)},
      {"input_sentence_size", "0"},  // every sentence: no sampling, no randomness
      {"shuffle_input_sentence", "false"},
      {"hard_vocab_limit", "true"},
  };
  std::vector<const char*> keys, values, docs;
  std::vector<size_t> lengths;
  for (const auto& [k, v] : flags) keys.push_back(k.c_str()), values.push_back(v.c_str());
  for (const std::string& d : documents) docs.push_back(d.data()), lengths.push_back(d.size());
  char *model = nullptr, *error = nullptr;
  size_t model_length = 0;
  check(api().train(docs.data(), lengths.data(), docs.size(), keys.data(), values.data(),
                    keys.size(), &model, &model_length, &error),
        error, "training");
  return from_model(take(model, model_length), o.num_sentinels);
}

SentencePieceTokenizer SentencePieceTokenizer::from_model(std::string model_proto,
                                                          int64_t num_sentinels) {
  SW_CHECK_ARG(num_sentinels >= 0, "SentencePiece: num_sentinels must be >= 0");
  SentencePieceTokenizer t;
  void* processor = nullptr;
  char* error = nullptr;
  check(api().load(model_proto.data(), model_proto.size(), &processor, &error), error,
        "model does not load");
  const SwSentencePieceApi* a = &api();
  t.processor_ = std::shared_ptr<void>(processor, [a](void* p) { a->destroy(p); });
  t.piece_count_ = a->piece_count(processor);
  t.num_sentinels_ = num_sentinels;
  t.model_proto_ = std::move(model_proto);
  // libswitch's special ids are T5's; a model with others would silently mislabel.
  SW_CHECK(t.piece(0) == "<pad>" && t.piece(1) == "</s>" && t.piece(2) == "<unk>",
           Status::kInvalidArgument,
           "SentencePiece model: ids 0, 1, 2 must be <pad>, </s>, <unk> (T5's), got \"", t.piece(0),
           "\", \"", t.piece(1), "\", \"", t.piece(2), "\"");
  return t;
}

SentencePieceTokenizer SentencePieceTokenizer::load(const std::string& path,
                                                    int64_t num_sentinels) {
  std::ifstream in(path, std::ios::binary);
  SW_CHECK(in, Status::kNotFound, "SentencePiece model ", path, ": cannot open");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  try {
    return from_model(bytes.str(), num_sentinels);
  } catch (const Error& e) {
    throw Error(e.status(), path + ": " + e.what());
  }
}

void SentencePieceTokenizer::save(const std::string& path) const {
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out.write(model_proto_.data(), static_cast<std::streamsize>(model_proto_.size()));
    out.close();
    SW_CHECK(out, Status::kIo, "SentencePiece model: cannot write ", temporary);
  }
  SW_CHECK(std::rename(temporary.c_str(), path.c_str()) == 0, Status::kIo,
           "SentencePiece model: cannot rename ", temporary, " to ", path);
}

int32_t SentencePieceTokenizer::sentinel_id(int64_t k) const {
  SW_CHECK(k >= 0 && k < num_sentinels_, Status::kOutOfRange, "sentinel ", k, " is outside [0, ",
           num_sentinels_, ")");
  return static_cast<int32_t>(vocab_size() - 1 - k);
}

std::vector<int32_t> SentencePieceTokenizer::encode_text(const std::string& text) const {
  if (text.empty()) return {};
  int32_t* out = nullptr;
  size_t count = 0;
  char* error = nullptr;
  check(api().encode(processor_.get(), text.data(), text.size(), &out, &count, &error), error,
        "encoding");
  std::vector<int32_t> ids(out, out + count);
  api().release(out);
  return ids;
}

std::vector<int32_t> SentencePieceTokenizer::encode(const std::string& text) const {
  std::vector<int32_t> ids;
  auto encode_plain = [&](const std::string& part) {
    const std::vector<int32_t> piece_ids = encode_text(part);
    ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
  };
  const std::string open = "<extra_id_";
  size_t start = 0, from = 0;  // text from `start` is not yet encoded; search from `from`
  while (true) {
    const size_t at = text.find(open, from);
    if (at == std::string::npos) break;
    size_t end = at + open.size();
    while (end < text.size() && std::isdigit(static_cast<unsigned char>(text[end]))) ++end;
    const size_t digits = end - at - open.size();
    from = at + 1;
    if (digits == 0 || digits > 6 || end >= text.size() || text[end] != '>') continue;
    encode_plain(text.substr(start, at - start));
    ids.push_back(sentinel_id(std::stoll(text.substr(at + open.size(), digits))));
    start = from = end + 1;
  }
  encode_plain(text.substr(start));
  return ids;
}

std::string SentencePieceTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string text;
  std::vector<int32_t> run;
  auto flush = [&] {
    if (run.empty()) return;
    char* out = nullptr;
    size_t length = 0;
    char* error = nullptr;
    check(api().decode(processor_.get(), run.data(), run.size(), &out, &length, &error), error,
          "decoding");
    // SentencePiece drops a leading word boundary ("\u2581"); after a sentinel it is a space.
    if (!text.empty() && piece(run.front()).rfind("\xe2\x96\x81", 0) == 0) text += ' ';
    text += take(out, length);
    run.clear();
  };
  for (int32_t id : ids) {
    SW_CHECK(id >= 0 && id < vocab_size(), Status::kOutOfRange, "decode: token id ", id,
             " is outside the tokenizer's vocabulary [0, ", vocab_size(), ")");
    if (id == 0 || id == 1) continue;  // pad, eos
    if (id >= piece_count_) {
      flush();
      text += "<extra_id_" + std::to_string(vocab_size() - 1 - id) + ">";
    } else {
      run.push_back(id);
    }
  }
  flush();
  return text;
}

std::string SentencePieceTokenizer::piece(int32_t id) const {
  char* out = nullptr;
  size_t length = 0;
  SW_CHECK(api().id_to_piece(processor_.get(), id, &out, &length) == 0, Status::kOutOfMemory,
           "SentencePiece: out of memory");
  return take(out, length);
}

}  // namespace sw
