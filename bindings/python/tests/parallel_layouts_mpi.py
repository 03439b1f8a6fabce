"""Expert and model parallelism from Python, run under mpirun -np 4 (ctest
python.parallel_layouts.mpi.np4): for "dp=2,ep=2", "dp=2,mp=2" and "ep=2,mp=2" each rank trains its
share on its replica's shard of a global batch while, in the same process, one trainer
takes the whole batch in as many micro-batches; the losses agree within 1e-5. Also a split
communicator and one from an MPI_Comm handle. Exit status 1 on any rank that disagrees."""
import ctypes
import ctypes.util
import sys

import numpy as np

import libswitch as sw

world = sw.Communicator.from_env()
rank, size = world.rank, world.size
assert size == 4, "run me with mpirun -np 4"
with world.split(rank // 2, rank) as half:
    assert (half.size, half.rank) == (2, rank % 2)
# A communicator from an MPI_Comm handle of the caller's: Open MPI's MPI_COMM_WORLD is the
# address of ompi_mpi_comm_world (mpi4py's MPI._addressof gives the same kind of address).
libmpi = ctypes.CDLL(ctypes.util.find_library("mpi"), mode=ctypes.RTLD_GLOBAL)
handle = ctypes.c_void_p(ctypes.addressof(ctypes.c_char.in_dll(libmpi, "ompi_mpi_comm_world")))
with sw.Communicator.from_mpi_address(ctypes.addressof(handle)) as caller:
    assert (caller.rank, caller.size) == (rank, size)

GLOBAL, INPUT, TARGET = 8, 10, 4
ids = (3 + (np.arange(GLOBAL * INPUT) * 37) % 380).reshape(GLOBAL, INPUT)
targets = (3 + (np.arange(GLOBAL * TARGET) * 101) % 380).reshape(GLOBAL, TARGET)
whole = {"input_ids": ids, "decoder_input_ids": targets, "labels": targets}

failures = 0
for layout, replicas, replica in (("dp=2,ep=2", 4, rank), ("dp=2,mp=2", 2, rank // 2),
                                  ("ep=2,mp=2", 2, rank // 2)):
    config = sw.Config.preset("tiny")
    config["dropout_rate"] = 0.0
    config["expert_dropout_rate"] = 0.0
    rows = slice(replica * GLOBAL // replicas, (replica + 1) * GLOBAL // replicas)
    mine = {name: a[rows] for name, a in whole.items()}
    single_config = sw.TrainConfig(f"batch_size: {GLOBAL} micro_batches: {replicas}")
    share_config = sw.TrainConfig(f"batch_size: {GLOBAL}")
    with sw.Model(config, seed=9) as single_model, sw.Model(config, seed=9) as share_model, \
            sw.Trainer(single_model, single_config) as single, \
            sw.Trainer(share_model, share_config) as share:
        share.set_parallel(world, layout)
        try:
            share.model()
            failures += 1
            print(f"rank {rank}: {layout}: the trainer's model was handed out", file=sys.stderr)
        except sw.UnsupportedError:
            pass
        for step in range(3):
            a, b = single.step(whole).loss, share.step(mine).loss
            if abs(a - b) > 1e-5 * abs(a):
                failures += 1
                print(f"rank {rank}: {layout} step {step}: {b} vs one process {a}", file=sys.stderr)
    if rank == 0 and not failures:
        print(f"{layout}: 3 steps within 1e-5 of one process")
sys.exit(1 if failures else 0)
