// TensorBoard event files: `tensorboard --logdir <run>` shows a run's losses, rates and
// expert loads. Each record is TFRecord-framed (the length as 8 little-endian bytes, the
// masked CRC-32C of those bytes, the serialized Event, the masked CRC-32C of it) around
// the messages of core/proto/tensorboard.proto.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace sw {

// One step's values: scalars, and histograms of counts per integer bin (bin i holds
// counts[i], drawn centered on i: expert i's tokens at i).
struct TensorBoardSummary {
  std::vector<std::pair<std::string, double>> scalars;
  std::vector<std::pair<std::string, std::vector<int64_t>>> counts;
};

class TensorBoardWriter {
 public:
  // Creates <dir>/events.out.tfevents.<unix seconds>.<host>.<pid>.<n> (a new file each
  // time, n counting the process's writers; TensorBoard reads a directory's event files
  // in name order) and writes its version record and a session start at first_step: a
  // reader drops what earlier files of the directory logged from that step on (the steps
  // after the checkpoint a run resumed from). Throws kIo when the file cannot be written.
  TensorBoardWriter(const std::string& dir, int64_t first_step);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  // Appends one Event for `step` holding every value of `summary`, and flushes.
  void write(int64_t step, const TensorBoardSummary& summary);

 private:
  void write_record(const std::string& bytes);

  std::string path_;
  std::FILE* out_ = nullptr;
};

}  // namespace sw
