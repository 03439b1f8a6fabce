#include "core/io/checkpoint.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>  // renameat2
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "core/dist/communicator.h"
#include "core/io/crc32c.h"
#include "core/tensor/error.h"

namespace sw {
namespace {

namespace fs = std::filesystem;

constexpr const char* kManifest = "manifest.pb";
// The CRC-32C of manifest.pb's bytes (8 hex digits): the manifest's own damage is caught
// too. Checkpoints written before it have none and load unchecked.
constexpr const char* kManifestChecksum = "manifest.crc32c";
constexpr const char* kLatest = "latest";
constexpr const char* kStepPrefix = "step-";
constexpr const char* kTemporaryPrefix = ".tmp-";
constexpr const char* kOptimizerPrefix = "optimizer/";

// An open shard, closed when the load is done (or fails).
struct ShardFile {
  int fd = -1;
  int64_t size = 0;
  ShardFile() = default;
  ShardFile(const ShardFile&) = delete;
  ShardFile& operator=(const ShardFile&) = delete;
  ~ShardFile() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

// The text of manifest.crc32c for a manifest's bytes.
std::string manifest_checksum(const std::string& manifest) {
  char text[16];
  std::snprintf(text, sizeof text, "%08x\n", crc32c(manifest.data(), manifest.size()));
  return text;
}

std::string step_name(int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "%s%08lld", kStepPrefix, static_cast<long long>(step));
  return name;
}

void fsync_path(const fs::path& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  SW_CHECK(fd >= 0, Status::kIo, "checkpoint: cannot open ", path.string(), " to sync it");
  const int rc = ::fsync(fd);
  ::close(fd);
  SW_CHECK(rc == 0, Status::kIo, "checkpoint: fsync of ", path.string(), " failed");
}

void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  SW_CHECK(out, Status::kIo, "checkpoint: cannot write ", path.string());
  fsync_path(path, false);
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  SW_CHECK(in, Status::kNotFound, "checkpoint: cannot read ", path.string());
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

// Step directories under root, oldest first.
std::vector<std::pair<int64_t, fs::path>> step_directories(const fs::path& root) {
  std::vector<std::pair<int64_t, fs::path>> steps;
  for (const fs::directory_entry& e : fs::directory_iterator(root)) {
    const std::string name = e.path().filename().string();
    if (!e.is_directory() || name.rfind(kStepPrefix, 0) != 0) continue;
    char* end = nullptr;
    const long long step = std::strtoll(name.c_str() + std::strlen(kStepPrefix), &end, 10);
    if (*end == '\0') steps.push_back({step, e.path()});
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

// Shard file names: "shard-00000.bin", ... for a single process or rank 0 of a
// distributed save, "shard-rank3-00000.bin", ... for the other ranks.
std::string shard_file(int rank, int index) {
  char name[48];
  if (rank == 0)
    std::snprintf(name, sizeof name, "shard-%05d.bin", index);
  else
    std::snprintf(name, sizeof name, "shard-rank%d-%05d.bin", rank, index);
  return name;
}

void add_tensors(const std::vector<std::pair<std::string, Tensor>>& tensors,
                 const std::string& prefix, proto::Manifest& manifest, const fs::path& dir,
                 const SaveOptions& options, int rank, int& shard_index, std::ofstream& shard,
                 int64_t& shard_size) {
  auto open_shard = [&] {
    if (shard.is_open()) {
      shard.close();
      SW_CHECK(shard, Status::kIo, "checkpoint: cannot write a shard in ", dir.string());
    }
    const std::string name = shard_file(rank, shard_index++);
    shard.open(dir / name, std::ios::binary | std::ios::trunc);
    SW_CHECK(shard, Status::kIo, "checkpoint: cannot create ", (dir / name).string());
    shard_size = 0;
  };
  for (const auto& [name, tensor] : tensors) {
    SW_CHECK_ARG(tensor.defined(), "checkpoint: tensor ", name, " is undefined");
    const Tensor host = tensor.device().is_cpu() ? tensor : tensor.to(Device::cpu());
    const int64_t bytes = static_cast<int64_t>(host.nbytes());
    if (!shard.is_open() || (shard_size > 0 && shard_size + bytes > options.shard_bytes))
      open_shard();
    proto::Manifest::TensorEntry* entry = manifest.add_tensors();
    entry->set_name(prefix + name);
    entry->set_dtype(static_cast<proto::Manifest::TensorEntry::DType>(host.dtype()));
    for (int64_t d : host.shape()) entry->add_shape(d);
    entry->set_shard(shard_file(rank, shard_index - 1));
    entry->set_offset(shard_size);
    entry->set_length(bytes);
    entry->set_crc32c(crc32c(host.raw(), static_cast<size_t>(bytes)));
    shard.write(static_cast<const char*>(host.raw()), bytes);
    SW_CHECK(shard, Status::kIo, "checkpoint: cannot write tensor ", name, " to ", dir.string());
    shard_size += bytes;
  }
}

// The tensors of a checkpoint written and synced as `rank`'s shards into a directory;
// their index entries are added to `manifest`.
void write_tensors(const fs::path& dir, const Checkpoint& c, const SaveOptions& options, int rank,
                   proto::Manifest& manifest) {
  int shard_index = 0;
  int64_t shard_size = 0;
  std::ofstream shard;
  add_tensors(c.parameters, "", manifest, dir, options, rank, shard_index, shard, shard_size);
  add_tensors(c.optimizer_state, kOptimizerPrefix, manifest, dir, options, rank, shard_index, shard,
              shard_size);
  if (shard.is_open()) {
    shard.close();
    SW_CHECK(shard, Status::kIo, "checkpoint: cannot write a shard in ", dir.string());
  }
  for (int i = 0; i < shard_index; ++i) fsync_path(dir / shard_file(rank, i), false);
}

// The manifest (the checkpoint's fields and the tensor index), written and synced with
// the directory.
void write_manifest(const fs::path& dir, const Checkpoint& c, proto::Manifest manifest) {
  manifest.set_format_version(kCheckpointFormatVersion);
  manifest.set_step(c.step);
  *manifest.mutable_model() = c.model;
  if (c.train.ByteSizeLong() > 0) *manifest.mutable_train() = c.train;
  manifest.set_seed(c.seed);
  manifest.set_data_epoch(c.data.epoch);
  manifest.set_data_example(c.data.example);
  const std::string bytes = manifest.SerializeAsString();
  write_file(dir / kManifest, bytes);
  write_file(dir / kManifestChecksum, manifest_checksum(bytes));
  fsync_path(dir, true);
}

// ".tmp-<anything>-<pid>" whose process is gone (or a name without a pid).
bool is_abandoned_temporary(const std::string& name) {
  if (name.rfind(kTemporaryPrefix, 0) != 0) return false;
  const size_t dash = name.rfind('-');
  char* end = nullptr;
  const long pid = std::strtol(name.c_str() + dash + 1, &end, 10);
  if (dash + 1 >= name.size() || *end != '\0' || pid <= 0) return true;
  return pid != ::getpid() && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
}

// Checks the options, creates the root, removes abandoned leftovers and makes the empty
// temporary directory a save of `step` writes into.
fs::path prepare_save(const fs::path& root, int64_t step, const SaveOptions& options) {
  SW_CHECK_ARG(options.keep_last >= 1, "checkpoint: keep_last must be >= 1, got ",
               options.keep_last);
  SW_CHECK_ARG(options.shard_bytes >= 1, "checkpoint: shard_bytes must be >= 1");
  SW_CHECK_ARG(step >= 0, "checkpoint: step must be >= 0, got ", step);
  SW_CHECK_ARG(!root.empty(), "checkpoint: the directory path is empty");
  std::error_code ec;
  fs::create_directories(root, ec);
  SW_CHECK(!ec, Status::kIo, "checkpoint: cannot create ", root.string(), ": ", ec.message());
  // Leftovers of saves whose process died (never referenced by `latest`); another live
  // process's save in progress is left alone.
  for (const fs::directory_entry& e : fs::directory_iterator(root))
    if (is_abandoned_temporary(e.path().filename().string())) fs::remove_all(e.path(), ec);
  const fs::path temporary =
      root / (kTemporaryPrefix + step_name(step) + "-" + std::to_string(::getpid()));
  fs::remove_all(temporary, ec);
  fs::create_directory(temporary, ec);
  SW_CHECK(!ec, Status::kIo, "checkpoint: cannot create ", temporary.string(), ": ", ec.message());
  return temporary;
}

// Moves a complete temporary directory into place as step `step`, points `latest` at it
// and applies retention; returns the step directory.
std::string publish_save(const fs::path& root, const fs::path& temporary, int64_t step,
                         const SaveOptions& options) {
  std::error_code ec;
  const std::string name = step_name(step);
  const std::string pid = std::to_string(::getpid());
  // Into place. An older directory of the same step is swapped out atomically
  // (RENAME_EXCHANGE), so at no moment does `latest` name a missing or partial directory.
  const fs::path final_dir = root / name;
  if (fs::exists(final_dir)) {
    SW_CHECK(
        ::renameat2(AT_FDCWD, temporary.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_EXCHANGE) == 0,
        Status::kIo, "checkpoint: cannot swap ", temporary.string(), " into ", final_dir.string());
  } else {
    fs::rename(temporary, final_dir);
  }
  fsync_path(root, true);
  const fs::path latest_temporary = root / (std::string(kTemporaryPrefix) + kLatest + "-" + pid);
  write_file(latest_temporary, name + "\n");
  fs::rename(latest_temporary, root / kLatest);
  fsync_path(root, true);
  fs::remove_all(temporary, ec);  // the replaced directory of the same step, if any

  // Retention: the newest keep_last step directories stay, the one `latest` names always.
  const auto steps = step_directories(root);
  for (size_t i = 0; i + static_cast<size_t>(options.keep_last) < steps.size(); ++i)
    if (steps[i].second.filename() != name) fs::remove_all(steps[i].second, ec);
  return final_dir.string();
}

}  // namespace

std::string save_checkpoint(const std::string& root_path, const Checkpoint& c,
                            const SaveOptions& options) {
  const fs::path root(root_path);
  const fs::path temporary = prepare_save(root, c.step, options);
  try {
    proto::Manifest manifest;
    write_tensors(temporary, c, options, 0, manifest);
    write_manifest(temporary, c, std::move(manifest));
  } catch (...) {
    std::error_code ec;
    fs::remove_all(temporary, ec);  // a failed save leaves nothing behind
    throw;
  }
  return publish_save(root, temporary, c.step, options);
}

std::string save_checkpoint(Communicator& comm, const std::string& root_path,
                            const Checkpoint& mine, const SaveOptions& options) {
  if (comm.size() == 1) return save_checkpoint(root_path, mine, options);
  const fs::path root(root_path);
  const bool leader = comm.rank() == 0;
  // Every phase ends with every rank learning whether any failed, so all of them throw
  // together (none waits in a collective the others left) and rank 0 removes the
  // temporary directory: a failed save changes nothing on disk.
  auto fail = [](const std::string& what) { throw Error(Status::kIo, what); };
  std::string error;
  fs::path temporary;
  if (leader) try {
      temporary = prepare_save(root, mine.step, options);
    } catch (const Error& e) {
      error = e.what();
    }
  const std::string shared =
      broadcast_bytes(comm, error.empty() ? "+" + temporary.string() : "-" + error, 0);
  if (shared[0] == '-') fail("checkpoint: rank 0: " + shared.substr(1));
  temporary = shared.substr(1);
  proto::Manifest part;
  try {
    write_tensors(temporary, mine, options, comm.rank(), part);
  } catch (const std::exception& e) {
    error = e.what();
  }
  const std::vector<std::string> parts =
      all_gather_bytes(comm, error.empty() ? "+" + part.SerializeAsString() : "-" + error);
  std::string result;  // rank 0's: "+<directory>" or "-<error>"
  if (leader) {
    try {
      proto::Manifest manifest;
      std::map<std::string, int> writer;  // each tensor from exactly one rank
      for (int r = 0; r < comm.size(); ++r) {
        SW_CHECK(parts[r][0] == '+', Status::kIo, "checkpoint: rank ", r, ": ", parts[r].substr(1));
        proto::Manifest p;
        SW_CHECK(p.ParseFromString(parts[r].substr(1)), Status::kInternal, "checkpoint: rank ", r,
                 "'s index does not parse");
        for (const proto::Manifest::TensorEntry& e : p.tensors()) {
          const auto [it, fresh] = writer.emplace(e.name(), r);
          SW_CHECK(fresh, Status::kInvalidArgument, "checkpoint: tensor ", e.name(),
                   " written by rank ", it->second, " and rank ", r);
          *manifest.add_tensors() = e;
        }
      }
      write_manifest(temporary, mine, std::move(manifest));
      result = "+" + publish_save(root, temporary, mine.step, options);
    } catch (const std::exception& e) {
      std::error_code ec;
      fs::remove_all(temporary, ec);
      result = std::string("-") + e.what();
    }
  }
  result = broadcast_bytes(comm, result, 0);
  if (result[0] == '-') fail(result.substr(1));
  return result.substr(1);
}

std::string latest_checkpoint(const std::string& root) {
  const fs::path pointer = fs::path(root) / kLatest;
  SW_CHECK(fs::exists(pointer), Status::kNotFound, "checkpoint: no ", pointer.string(),
           " (no checkpoint saved under ", root, ")");
  std::string name = read_file(pointer);
  while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
  SW_CHECK(!name.empty() && name.find('/') == std::string::npos, Status::kCorrupt,
           "checkpoint: ", pointer.string(), " does not name a checkpoint directory");
  const fs::path dir = fs::path(root) / name;
  SW_CHECK(fs::is_directory(dir), Status::kNotFound, "checkpoint: ", pointer.string(), " names ",
           name, ", which does not exist");
  return dir.string();
}

Checkpoint load_checkpoint(const std::string& path) {
  SW_CHECK_ARG(!path.empty(), "checkpoint: the directory path is empty");
  fs::path dir(path);
  if (!fs::exists(dir / kManifest) && fs::exists(dir / kLatest)) dir = latest_checkpoint(path);
  const fs::path manifest_path = dir / kManifest;
  SW_CHECK(fs::exists(manifest_path), Status::kNotFound, "checkpoint: no ", kManifest, " in ",
           dir.string());
  const std::string manifest_bytes = read_file(manifest_path);
  if (fs::exists(dir / kManifestChecksum))
    SW_CHECK(read_file(dir / kManifestChecksum) == manifest_checksum(manifest_bytes),
             Status::kCorrupt, "checkpoint: ", manifest_path.string(), " does not match ",
             kManifestChecksum, " (one of them changed after saving)");
  proto::Manifest manifest;
  SW_CHECK(manifest.ParseFromString(manifest_bytes), Status::kCorrupt,
           "checkpoint: ", manifest_path.string(), " does not parse as a Manifest");
  SW_CHECK(manifest.format_version() >= 1 && manifest.format_version() <= kCheckpointFormatVersion,
           Status::kUnsupported, "checkpoint: ", manifest_path.string(), " has format version ",
           manifest.format_version(), "; this libswitch reads 1 to ", kCheckpointFormatVersion);
  Checkpoint c;
  c.step = manifest.step();
  c.model = manifest.model();
  try {
    validate(c.model);
  } catch (const Error& e) {
    throw Error(Status::kCorrupt, "checkpoint: " + manifest_path.string() + ": " + e.what());
  }
  if (manifest.has_train()) c.train = manifest.train();
  c.seed = manifest.seed();
  c.data = {manifest.data_epoch(), manifest.data_example()};
  ShardFile shard;  // tensors are stored shard by shard: one open at a time
  std::string shard_name;
  std::set<std::string> names;
  for (const proto::Manifest::TensorEntry& e : manifest.tensors()) {
    const fs::path shard_path = dir / e.shard();
    auto where = [&] { return "tensor " + e.name() + " in " + shard_path.string(); };
    SW_CHECK(names.insert(e.name()).second, Status::kCorrupt,
             "checkpoint: ", manifest_path.string(), " lists tensor ", e.name(), " twice");
    SW_CHECK(!e.shard().empty() && e.shard().find('/') == std::string::npos, Status::kCorrupt,
             "checkpoint: ", where(), ": bad shard name");
    if (e.shard() != shard_name) {
      shard.reset();
      shard.fd = ::open(shard_path.c_str(), O_RDONLY);
      SW_CHECK(shard.fd >= 0, errno == ENOENT ? Status::kNotFound : Status::kIo,
               "checkpoint: ", where(), ": ",
               errno == ENOENT ? "the shard is missing" : std::strerror(errno));
      struct stat st {};
      SW_CHECK(::fstat(shard.fd, &st) == 0, Status::kIo, "checkpoint: cannot stat ",
               shard_path.string());
      shard.size = st.st_size;
      shard_name = e.shard();
    }
    SW_CHECK(e.dtype() >= 0 && e.dtype() <= proto::Manifest::TensorEntry::I64, Status::kCorrupt,
             "checkpoint: ", where(), ": unknown dtype");
    const DType dtype = static_cast<DType>(e.dtype());
    const Shape shape(e.shape().begin(), e.shape().end());
    // Sizes are checked against the file before anything is allocated.
    size_t bytes = 0;
    try {
      bytes = shape_bytes(shape, dtype);
    } catch (const Error& x) {
      throw Error(Status::kCorrupt, "checkpoint: " + where() + ": " + x.what());
    }
    SW_CHECK(e.length() == static_cast<int64_t>(bytes), Status::kCorrupt, "checkpoint: ", where(),
             ": ", e.length(), " bytes for ", dtype_name(dtype), " ", shape_str(shape), " (", bytes,
             " expected)");
    SW_CHECK(e.offset() >= 0 && e.length() <= shard.size && e.offset() <= shard.size - e.length(),
             Status::kCorrupt, "checkpoint: ", where(), ": the shard is truncated (", shard.size,
             " bytes; the tensor needs ", e.length(), " at offset ", e.offset(), ")");
    Tensor t = Tensor::empty(shape, dtype);
    // Straight into the tensor: no staging copy of the shard.
    char* data = static_cast<char*>(t.raw());
    for (int64_t done = 0; done < e.length();) {
      const ssize_t n =
          ::pread(shard.fd, data + done, static_cast<size_t>(e.length() - done), e.offset() + done);
      SW_CHECK(n > 0, Status::kIo, "checkpoint: cannot read ", where());
      done += n;
    }
    SW_CHECK(crc32c(data, static_cast<size_t>(e.length())) == e.crc32c(), Status::kCorrupt,
             "checkpoint: ", where(), ": checksum mismatch (the bytes changed after saving)");
    if (e.name().rfind(kOptimizerPrefix, 0) == 0)
      c.optimizer_state.push_back({e.name().substr(std::strlen(kOptimizerPrefix)), t});
    else
      c.parameters.push_back({e.name(), t});
  }
  return c;
}

void restore_tensors(const std::vector<std::pair<std::string, Tensor>>& saved,
                     const std::vector<std::pair<std::string, Tensor>>& targets, bool strict,
                     const std::string& what) {
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [name, t] : saved) by_name[name] = &t;
  std::vector<std::pair<Tensor, const Tensor*>> copies;
  for (const auto& [name, target] : targets) {
    const auto it = by_name.find(name);
    if (it == by_name.end()) {
      SW_CHECK(!strict, Status::kNotFound, "checkpoint: ", what, " ", name,
               " is missing from the checkpoint");
      continue;
    }
    const Tensor& t = *it->second;
    SW_CHECK(t.shape() == target.shape() && t.dtype() == target.dtype(), Status::kInvalidArgument,
             "checkpoint: ", what, " ", name, " is ", dtype_name(t.dtype()), " ",
             shape_str(t.shape()), " in the checkpoint, ", dtype_name(target.dtype()), " ",
             shape_str(target.shape()), " here");
    copies.push_back({target, &t});
    by_name.erase(it);
  }
  if (strict && !by_name.empty())
    throw Error(Status::kInvalidArgument, "checkpoint: unexpected " + what + " " +
                                              by_name.begin()->first + " (and " +
                                              std::to_string(by_name.size() - 1) + " more)");
  for (auto& [target, source] : copies) target.copy_from(*source);
}

SwitchTransformer model_from_checkpoint(const Checkpoint& checkpoint) {
  SwitchTransformer model(checkpoint.model, checkpoint.seed);
  std::vector<std::pair<std::string, Tensor>> targets;
  for (const auto& e : model.parameters().entries()) targets.push_back({e.name, e.tensor});
  restore_tensors(checkpoint.parameters, targets, true, "parameter");
  return model;
}

}  // namespace sw
