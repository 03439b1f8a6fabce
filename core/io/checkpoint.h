// Checkpoints (DESIGN.md, Checkpoints): one directory per step under a root, holding
// `manifest.pb` (a protobuf Manifest: configs, step, seed, data position and an index of
// every tensor with its shard, offset, length and CRC-32C) and raw shard files of bounded
// size. A save writes a temporary directory, fsyncs every file and the directory, renames
// it into place and only then replaces the root's `latest` pointer, so a crash at any
// point leaves `latest` on a complete checkpoint; retention never deletes the newest one.
// Distributed runs may write in parallel: each rank its own shards (its experts), rank 0
// the manifest that indexes them all.
// A load checks the manifest and every tensor's bytes before returning anything.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/data/pretraining_data.h"
#include "core/dist/communicator.h"
#include "core/model/config.h"
#include "core/model/switch_transformer.h"
#include "core/proto/libswitch.pb.h"
#include "core/tensor/tensor.h"

namespace sw {

constexpr int32_t kCheckpointFormatVersion = 1;

struct Checkpoint {
  int64_t step = 0;
  ModelConfig model;
  proto::TrainConfig train;  // empty for a model saved outside a training run
  uint64_t seed = 0;
  DataPosition data;
  // Named tensors in order; the optimizer's are stored as "optimizer/<parameter>/<slot>".
  std::vector<std::pair<std::string, Tensor>> parameters;
  std::vector<std::pair<std::string, Tensor>> optimizer_state;
};

struct SaveOptions {
  int64_t keep_last = 3;                   // complete checkpoints kept (>= 1); older ones go
  int64_t shard_bytes = int64_t{1} << 30;  // a new shard starts past this size
};

// Saves under `root` (created if needed) as `root/step-NNNNNNNN`; returns that path.
// Leftovers of an interrupted save are removed first. An existing checkpoint of the same
// step is replaced only once the new one is complete.
std::string save_checkpoint(const std::string& root, const Checkpoint& checkpoint,
                            const SaveOptions& options = {});

// A distributed save (collective over comm): every rank passes the tensors it writes
// (each tensor written by exactly one rank, e.g. the experts by their owners; the other
// fields are taken from rank 0's) and writes them as its own shards into the directory
// rank 0 made; rank 0 then writes the manifest indexing every rank's tensors and moves
// the checkpoint into place. The root must be on a filesystem every rank sees. A failure
// on any rank (or a tensor two ranks wrote) throws on every rank and leaves what was
// saved before untouched. Returns the step directory on every rank.
std::string save_checkpoint(Communicator& comm, const std::string& root, const Checkpoint& mine,
                            const SaveOptions& options = {});

// The checkpoint directory `latest` points to under root; a not-found error when none.
std::string latest_checkpoint(const std::string& root);

// Loads a checkpoint directory, or the latest one when given a root. Every failure is an
// error naming the file and, for tensors, the tensor: a manifest that does not parse, an
// unknown format version, a missing or truncated shard, a length that does not match the
// dtype and shape, a checksum mismatch. Tensors come back on the CPU.
Checkpoint load_checkpoint(const std::string& path);

// The model a checkpoint holds (its config, its parameters restored strictly), on the CPU.
SwitchTransformer model_from_checkpoint(const Checkpoint& checkpoint);

// Copies saved tensors into `targets` by name only after checking them all: strict (the
// default) refuses missing and unexpected names; partial copies what matches by name and
// ignores the rest. A tensor present in both with another shape or dtype is an error
// either way. Nothing is changed when it throws. `what` names the set in errors.
void restore_tensors(const std::vector<std::pair<std::string, Tensor>>& saved,
                     const std::vector<std::pair<std::string, Tensor>>& targets, bool strict,
                     const std::string& what);

}  // namespace sw
