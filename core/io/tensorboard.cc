#include "core/io/tensorboard.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>

#include "core/io/crc32c.h"
#include "core/proto/tensorboard.pb.h"
#include "core/tensor/error.h"

namespace sw {
namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string little_endian(uint64_t v, int bytes) {
  std::string out;
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  return out;
}

void fill_counts(const std::vector<int64_t>& counts, tensorboard::HistogramProto& h) {
  double num = 0, sum = 0, squares = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double n = static_cast<double>(counts[i]), x = static_cast<double>(i);
    num += n;
    sum += n * x;
    squares += n * x * x;
    // TensorBoard draws bucket i over (limit[i - 1], limit[i]] (the first from min):
    // limits i + 0.5 and min -0.5 center bin i on i, every bin one wide.
    h.add_bucket_limit(static_cast<double>(i) + 0.5);
    h.add_bucket(n);
  }
  h.set_num(num);
  h.set_sum(sum);
  h.set_sum_squares(squares);
  h.set_min(-0.5);
  h.set_max(static_cast<double>(counts.size()) - 0.5);
}

// TFRecord's checksum of a record's parts: CRC-32C rotated right by 15 bits plus a constant.
uint32_t masked_crc32c(const void* data, size_t n) {
  const uint32_t crc = crc32c(data, n);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

}  // namespace

TensorBoardWriter::TensorBoardWriter(const std::string& dir, int64_t first_step) {
  static std::atomic<int64_t> writers{0};
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  path_ = dir + "/events.out.tfevents." +
          std::to_string(static_cast<int64_t>(std::floor(now_seconds()))) + "." + host + "." +
          std::to_string(getpid()) + "." + std::to_string(writers++);
  out_ = std::fopen(path_.c_str(), "wbx");  // never another writer's file
  SW_CHECK(out_ != nullptr, Status::kIo, "tensorboard: cannot create ", path_, ": ",
           std::strerror(errno));
  tensorboard::Event version;
  version.set_wall_time(now_seconds());
  version.set_file_version("brain.Event:2");
  write_record(version.SerializeAsString());
  tensorboard::Event start;
  start.set_wall_time(now_seconds());
  start.set_step(first_step);
  start.mutable_session_log()->set_status(tensorboard::SessionLog::START);
  write_record(start.SerializeAsString());
}

TensorBoardWriter::~TensorBoardWriter() {
  if (out_) std::fclose(out_);
}

void TensorBoardWriter::write(int64_t step, const TensorBoardSummary& summary) {
  tensorboard::Event e;
  e.set_wall_time(now_seconds());
  e.set_step(step);
  tensorboard::Summary* s = e.mutable_summary();
  for (const auto& [tag, value] : summary.scalars) {
    tensorboard::Summary::Value* v = s->add_value();
    v->set_tag(tag);
    v->set_simple_value(static_cast<float>(value));
  }
  for (const auto& [tag, counts] : summary.counts) {
    tensorboard::Summary::Value* v = s->add_value();
    v->set_tag(tag);
    fill_counts(counts, *v->mutable_histo());
  }
  write_record(e.SerializeAsString());
}

void TensorBoardWriter::write_record(const std::string& bytes) {
  const std::string length = little_endian(bytes.size(), 8);
  const std::string record = length +
                             little_endian(masked_crc32c(length.data(), length.size()), 4) + bytes +
                             little_endian(masked_crc32c(bytes.data(), bytes.size()), 4);
  SW_CHECK(
      std::fwrite(record.data(), 1, record.size(), out_) == record.size() && std::fflush(out_) == 0,
      Status::kIo, "tensorboard: cannot write ", path_, ": ", std::strerror(errno));
}

}  // namespace sw
