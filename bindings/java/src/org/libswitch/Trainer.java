package org.libswitch;

import org.libswitch.raw.SWIGTYPE_p_sw_trainer;
import org.libswitch.raw.libswitch_raw;

/**
 * Optimizer steps on caller batches or the built-in span-corruption data, evaluation,
 * and checkpoints a new process continues bit for bit. One thread at a time.
 */
public final class Trainer extends NativeHandle<SWIGTYPE_p_sw_trainer> {
  private Trainer(SWIGTYPE_p_sw_trainer pointer) {
    super(pointer, libswitch_raw::sw_trainer_destroy);
  }

  public Trainer(Model model, TrainConfig config) {
    this(LibSwitch.checked(libswitch_raw.swb_trainer_create(model.handle(), config.handle())));
  }

  /** A trainer continuing a checkpoint (its model, optimizer state, step, data position). */
  public static Trainer restore(String path, String device) {
    LibSwitch.load();
    return new Trainer(LibSwitch.checked(libswitch_raw.swb_trainer_restore(path, device)));
  }

  /**
   * Trains data-parallel over comm's ranks: each rank steps on its own batches and the
   * gradients are summed in rank order, so the run equals one process with as many
   * micro-batches. Call before the first step, on every rank.
   */
  public void setDataParallel(Communicator comm) {
    LibSwitch.check(libswitch_raw.sw_trainer_set_data_parallel(handle(), comm.handle()));
  }

  /**
   * Lays this trainer out over comm's ranks (collective, before its first step): "dp=N",
   * "dp=N,ep=M" (experts split over groups of M ranks), "dp=N,mp=M" (heads and d_ff
   * split) or both, "dp=N,ep=M,mp=K". Under ep or mp each rank trains its share of a copy of the model ({@link
   * #model()} is then refused); steps take this replica's shard; save writes the whole model.
   */
  public void setParallel(Communicator comm, String layout) {
    LibSwitch.check(libswitch_raw.sw_trainer_set_parallel(handle(), comm.handle(), layout));
  }

  /** The model being trained (another handle to it; close it too). */
  public Model model() {
    return new Model(LibSwitch.checked(libswitch_raw.swb_trainer_model(handle())));
  }

  /** One step on the next built-in batch. */
  public Metrics step() {
    return run(0, null);
  }

  /** One step on batch (labels required). */
  public Metrics step(Batch batch) {
    return run(0, batch);
  }

  /** The loss on the built-in held-out batches. */
  public Metrics evaluate() {
    return run(1, null);
  }

  public Metrics evaluate(Batch batch) {
    return run(1, batch);
  }

  /** A checkpoint under root; returns its directory. */
  public String save(String root) {
    LibSwitch.check(libswitch_raw.sw_trainer_save(handle(), root));
    return LibSwitch.latestCheckpoint(root);
  }

  /**
   * From now on, writes each step and evaluation to a TensorBoard event file in dir (losses,
   * learning rate, gradient norm, tokens/s, dropped fraction, each layer's router entropy and
   * expert-load histogram); null or "" stops.
   */
  public void logTo(String dir) {
    LibSwitch.check(libswitch_raw.sw_trainer_log_to(handle(), dir));
  }

  private Metrics run(int evaluate, Batch b) {
    if (b == null) {
      return Metrics.of(LibSwitch.checked(libswitch_raw.swb_trainer_run(handle(), evaluate, 0, 0, 0,
          null, null, null, null, null)));
    }
    return Metrics.of(LibSwitch.checked(libswitch_raw.swb_trainer_run(handle(), evaluate, b.batch,
        b.inputLen, b.targetLen, b.inputIds, b.attentionMask, b.decoderInputIds,
        b.decoderAttentionMask, b.labels)));
  }
}
