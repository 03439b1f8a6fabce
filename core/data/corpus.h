// Text corpora as documents, and a deterministic held-out split. The default corpus is
// the fortune collection of Debian's `fortunes` package: real English text that every
// machine can install, nothing downloaded.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sw {

constexpr const char* kDefaultCorpus = "/usr/share/games/fortunes";

// Documents from a file, or from every regular file of a directory in name order
// (symlinks and fortune index files `*.dat` are skipped). A file holding lines of a lone
// "%" (the fortune format) has a document between them; any other file has a document
// per paragraph (blank-line separated). Empty documents are dropped. A missing path, or
// a corpus with no document, is an error naming the path.
std::vector<std::string> read_documents(const std::string& path);

struct CorpusSplit {
  std::vector<std::string> train, validation;
};

// Each document goes to the validation side with probability `validation_fraction`, by a
// Philox draw keyed by the seed and the document's index: the same split on every run
// and machine. Both sides get at least one document when there are two or more.
CorpusSplit split_documents(const std::vector<std::string>& documents, double validation_fraction,
                            uint64_t seed);

}  // namespace sw
