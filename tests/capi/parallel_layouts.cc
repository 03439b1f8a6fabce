// The C ABI's expert and model parallelism under mpirun -np 4 (sw_trainer_set_parallel):
// for "dp=2,ep=2", "dp=2,mp=2" and "ep=2,mp=2" every rank trains its share of the model on its
// replica's shard of a global batch, and, in the same process, one trainer takes the whole
// batch cut into as many micro-batches. Losses agree within 1e-5 (the split GEMMs see other
// shapes), the checkpoint the layout saves holds the whole model (rank 0 loads it and
// compares it with the single trainer's, tensor by tensor), a restored trainer continues
// at a layout with its optimizer state, and misuse is refused by name. Communicators from
// a split and from the caller's MPI_Comm are checked too. Usage: sw_capi_parallel DIR
// [DEVICE]. With a DEVICE (cuda:0) every model is on that GPU and the ranks move device
// tensors through host memory (device_transport: STAGED, so they may share it); exit 77
// without a CUDA device.
#include <mpi.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "global_batch.h"
#include "libswitch.hpp"

namespace {

using sw_test::rows_of;

int rank = 0, size = 1, failures = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "rank %d: %s\n", rank, what.c_str());
    ++failures;
  }
}

void check(sw_status s) {
  if (s != SW_OK) throw libswitch::Error(s, sw_last_error());
}

// ||a - b|| / ||b|| over every parameter of two models.
double relative_difference(libswitch::Model& a, libswitch::Model& b) {
  double diff = 0, norm = 0;
  for (const std::string& name : b.parameter_names()) {
    const std::vector<float> x = a.get_parameter(name), y = b.get_parameter(name);
    for (size_t i = 0; i < y.size(); ++i) {
      diff += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
      norm += double(y[i]) * y[i];
    }
  }
  return std::sqrt(diff / norm);
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc != 2 && argc != 3) throw std::runtime_error("usage: sw_capi_parallel DIR [DEVICE]");
  const std::string dir = argv[1];
  const std::string device = argc == 3 ? argv[2] : "cpu";
  const bool on_gpu = device != "cpu";
  int gpus = 0;
  if (on_gpu && (sw_cuda_device_count(&gpus) != SW_OK || gpus == 0)) {
    std::printf("skipped: no CUDA device\n");
    return 77;
  }
  // On a GPU the ranks share it, so their device tensors go through host memory.
  const std::string transport = on_gpu ? " device_transport: STAGED" : "";
  sw_communicator* world = nullptr;
  check(sw_communicator_from_env(&world));  // initialises MPI under mpirun
  check(sw_communicator_rank(world, &rank));
  check(sw_communicator_size(world, &size));
  expect(size == 4, "run me with mpirun -np 4");

  // Communicators: the caller's MPI_Comm, and a split into two halves.
  sw_communicator* from_mpi = nullptr;
  const MPI_Comm caller = MPI_COMM_WORLD;  // a handle the caller owns
  check(sw_communicator_from_mpi(&caller, &from_mpi));
  int n = 0, r = 0;
  check(sw_communicator_size(from_mpi, &n));
  check(sw_communicator_rank(from_mpi, &r));
  expect(n == size && r == rank, "sw_communicator_from_mpi is not the world");
  sw_communicator* half = nullptr;
  check(sw_communicator_split(world, rank / 2, rank, &half));
  check(sw_communicator_size(half, &n));
  check(sw_communicator_rank(half, &r));
  expect(n == 2 && r == rank % 2, "a split into halves");
  expect(sw_communicator_split(world, -1, 0, &half) == SW_ERR_INVALID_ARGUMENT &&
             std::strstr(sw_last_error(), "color"),
         "a negative color is refused by name");

  const int64_t global = 8;
  const libswitch::Batch whole = sw_test::global_batch(global, 10, 4);
  libswitch::Config config = libswitch::Config::preset("tiny");
  config.set("dropout_rate", 0.0).set("expert_dropout_rate", 0.0);

  struct Case {
    const char* layout;
    int64_t replicas, replica;  // the data-parallel replicas and this rank's
  };
  const Case cases[] = {
      {"dp=2,ep=2", 4, rank}, {"dp=2,mp=2", 2, rank / 2}, {"ep=2,mp=2", 2, rank / 2}};
  for (const Case& c : cases) {
    // A rate of 1e-3: Adafactor scales each row of an update by the row's gradient RMS, so
    // a ReLU unit whose pre-activation crosses 0 in the last bit (the layout sums in another
    // order) turns an all-zero gradient row into a full step; at this rate such a row
    // stays within the tolerance (as in dist_test.cc).
    const std::string text =
        "optimizer: ADAFACTOR learning_rate: 0.001 batch_size: " + std::to_string(global) +
        " micro_batches: " + std::to_string(c.replicas) + transport;
    libswitch::Config train = libswitch::Config::from_text(SW_CONFIG_TRAIN, text);
    libswitch::Config share_train = train.clone();
    share_train.set("micro_batches", 1);
    libswitch::Model single_model(config, device, 9), share_model(config, device, 9);
    libswitch::Trainer single(single_model, train), share(share_model, share_train);
    check(sw_trainer_set_parallel(share.get(), world, c.layout));
    expect(sw_trainer_set_parallel(share.get(), world, c.layout) == SW_ERR_INVALID_ARGUMENT,
           std::string(c.layout) + ": a second layout is refused");
    sw_model* m = nullptr;
    expect(sw_trainer_model(share.get(), &m) == SW_ERR_UNSUPPORTED &&
               std::strstr(sw_last_error(), "share"),
           std::string(c.layout) + ": sw_trainer_model on a share is refused");
    const libswitch::Batch mine =
        rows_of(whole, c.replica * (global / c.replicas), global / c.replicas);
    for (int step = 0; step < 3; ++step) {
      const double a = single.step(whole).loss, b = share.step(mine).loss;
      expect(std::abs(a - b) <= 1e-5 * std::abs(a),
             std::string(c.layout) + " step " + std::to_string(step) + ": loss " +
                 std::to_string(b) + " vs one process " + std::to_string(a));
    }
    const std::string root = dir + "/" + c.layout;
    check(sw_trainer_save(share.get(), root.c_str()));  // collective
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
      libswitch::Model saved = libswitch::Model::load(root);
      const double d = relative_difference(saved, single_model);
      expect(d <= 1e-5, std::string(c.layout) + ": the saved model differs from one process's by " +
                            std::to_string(d));
      if (failures == 0)
        std::printf("%s: 3 steps within 1e-5 of one process; saved model within %.1e\n", c.layout,
                    d);
    }
  }

  // A restored trainer continues at a layout with its optimizer state: each rank saves a
  // one-process run of 2 steps in its own folder, restores it under ep and takes step 3.
  // Without jitter (and dropout) a step does not depend on how it is cut into micro-batches.
  {
    const std::string text = "optimizer: ADAFACTOR batch_size: 8" + transport;
    libswitch::Config train = libswitch::Config::from_text(SW_CONFIG_TRAIN, text);
    libswitch::Config still = config.clone();
    still.set("router_jitter_eps", 0.0);
    libswitch::Model model(still, device, 9);
    libswitch::Trainer single(model, train);
    single.step(whole);
    single.step(whole);
    const std::string mine = dir + "/restore-" + std::to_string(rank);
    check(sw_trainer_save(single.get(), mine.c_str()));
    const double expected = single.step(whole).loss;
    libswitch::Trainer restored = libswitch::Trainer::restore(mine, device);
    check(sw_trainer_set_parallel(restored.get(), world, "ep=4"));
    const sw_metrics m = restored.step(rows_of(whole, rank * 2, 2));
    expect(m.step == 3 && std::abs(m.loss - expected) <= 1e-5 * std::abs(expected),
           "a restored trainer at ep=4: step " + std::to_string(m.step) + " loss " +
               std::to_string(m.loss) + " vs " + std::to_string(expected));
  }
  // Layouts that do not fit are named.
  {
    libswitch::Model model(config, device, 9);
    libswitch::Trainer t(
        model, libswitch::Config::from_text(SW_CONFIG_TRAIN, "batch_size: 8" + transport));
    expect(sw_trainer_set_parallel(t.get(), world, "dp=3") == SW_ERR_INVALID_ARGUMENT,
           "dp=3 over 4 ranks is refused");
    expect(sw_trainer_set_parallel(t.get(), world, "ep=3") == SW_ERR_INVALID_ARGUMENT,
           "ep=3 over 4 ranks is refused");
  }
  if (on_gpu) {  // NCCL refuses two ranks on one GPU, by name
    libswitch::Model model(config, device, 9);
    libswitch::Trainer t(model, libswitch::Config::from_text(SW_CONFIG_TRAIN, "batch_size: 8"));
    expect(sw_trainer_set_parallel(t.get(), world, "dp=4") == SW_ERR_INVALID_ARGUMENT &&
               std::strstr(sw_last_error(), "which NCCL refuses"),
           "four ranks on one GPU under NCCL are refused by name");
  }
  sw_communicator_destroy(half);
  sw_communicator_destroy(from_mpi);
  sw_communicator_destroy(world);
  if (rank == 0)
    std::printf("%s%s\n", failures ? "FAILED" : "all layouts agree", on_gpu ? " on the GPU" : "");
  return failures ? 1 : 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "rank %d: error: %s\n", rank, e.what());
  return 1;
}
