// The C ABI's data parallelism under mpirun: every rank trains a replica on its shard of a
// global batch (sw_trainer_set_data_parallel) and, in the same process, a single trainer
// on the whole global batch cut into as many micro-batches; losses and every parameter
// must agree bit for bit. Exit status 0 on every rank when they do.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "global_batch.h"
#include "libswitch.hpp"

int main() try {
  sw_communicator* comm = nullptr;
  if (sw_communicator_from_env(&comm) != SW_OK) {
    std::fprintf(stderr, "%s\n", sw_last_error());
    return 1;
  }
  int rank = 0, size = 1;
  sw_communicator_rank(comm, &rank);
  sw_communicator_size(comm, &size);
  const int64_t per_rank = 2, global = per_rank * size;
  const libswitch::Batch whole = sw_test::global_batch(global, 10, 4);
  const libswitch::Batch shard = sw_test::rows_of(whole, rank * per_rank, per_rank);

  libswitch::Config config = libswitch::Config::preset("tiny");
  const std::string text =
      "optimizer: ADAMW learning_rate: 0.001 batch_size: " + std::to_string(global) +
      " micro_batches: " + std::to_string(size);
  libswitch::Config train = libswitch::Config::from_text(SW_CONFIG_TRAIN, text);
  libswitch::Model single_model(config, "cpu", 9), replica_model(config, "cpu", 9);
  libswitch::Trainer single(single_model, train);
  libswitch::Config replica_train = train.clone();
  replica_train.set("micro_batches", 1);
  libswitch::Trainer replica(replica_model, replica_train);
  if (sw_trainer_set_data_parallel(replica.get(), comm) != SW_OK)
    throw std::runtime_error(sw_last_error());
  int mismatches = 0;
  for (int step = 0; step < 3; ++step) {
    const double a = single.step(whole).loss, b = replica.step(shard).loss;
    if (std::abs(a - b) > 1e-6 * std::abs(a)) {
      std::fprintf(stderr, "rank %d step %d: loss %.9g vs single %.9g\n", rank, step, b, a);
      ++mismatches;
    }
  }
  for (const std::string& name : single_model.parameter_names())
    if (single_model.get_parameter(name) != replica_model.get_parameter(name)) {
      std::fprintf(stderr, "rank %d: %s differs from the single-process run\n", rank, name.c_str());
      ++mismatches;
    }
  if (rank == 0)
    std::printf("%d ranks: data-parallel replicas %s the single process\n", size,
                mismatches ? "DIFFER from" : "equal");
  sw_communicator_destroy(comm);
  return mismatches ? 1 : 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
