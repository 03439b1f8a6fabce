#include "core/data/corpus.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/tensor/error.h"
#include "core/tensor/philox.h"

namespace sw {
namespace {

namespace fs = std::filesystem;

constexpr uint32_t kSplitSite = 1;  // RandomPurpose::kData site of the held-out split

void append_documents(const fs::path& file, std::vector<std::string>& documents) {
  std::ifstream in(file, std::ios::binary);
  SW_CHECK(in, Status::kIo, "corpus: cannot read ", file.string());
  std::vector<std::string> lines;
  bool fortune_format = false;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    fortune_format |= line == "%";
    lines.push_back(std::move(line));
  }
  std::string document;
  auto finish = [&] {
    if (document.find_first_not_of(" \t\n") != std::string::npos) documents.push_back(document);
    document.clear();
  };
  for (const std::string& line : lines) {
    if (fortune_format ? line == "%" : line.find_first_not_of(" \t") == std::string::npos) {
      finish();
    } else {
      document += document.empty() ? line : "\n" + line;
    }
  }
  finish();
}

}  // namespace

std::vector<std::string> read_documents(const std::string& path) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  SW_CHECK(!ec && fs::exists(status), Status::kNotFound, "corpus ", path, ": no such file");
  std::vector<std::string> documents;
  if (fs::is_directory(status)) {
    std::vector<fs::path> files;
    for (const fs::directory_entry& e : fs::directory_iterator(path)) {
      if (e.is_symlink() || !e.is_regular_file() || e.path().extension() == ".dat") continue;
      files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    for (const fs::path& f : files) append_documents(f, documents);
  } else {
    append_documents(path, documents);
  }
  SW_CHECK(!documents.empty(), Status::kInvalidArgument, "corpus ", path, ": no documents");
  return documents;
}

CorpusSplit split_documents(const std::vector<std::string>& documents, double validation_fraction,
                            uint64_t seed) {
  SW_CHECK_ARG(validation_fraction > 0 && validation_fraction < 1,
               "corpus split: validation_fraction must be in (0, 1), got ", validation_fraction);
  const RandomStream draw(seed, RandomPurpose::kData, kSplitSite, 0);
  CorpusSplit split;
  for (size_t i = 0; i < documents.size(); ++i)
    (draw.uniform(i) < validation_fraction ? split.validation : split.train)
        .push_back(documents[i]);
  // A tiny corpus could put everything on one side; move one document across.
  if (documents.size() >= 2 && split.validation.empty()) {
    split.validation.push_back(split.train.back());
    split.train.pop_back();
  } else if (documents.size() >= 2 && split.train.empty()) {
    split.train.push_back(split.validation.back());
    split.validation.pop_back();
  }
  return split;
}

}  // namespace sw
