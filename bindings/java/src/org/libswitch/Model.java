package org.libswitch;

import java.math.BigInteger;
import java.util.ArrayList;
import java.util.List;
import org.libswitch.raw.SWIGTYPE_p_sw_model;
import org.libswitch.raw.SWIGTYPE_p_sw_result;
import org.libswitch.raw.libswitch_raw;
import org.libswitch.raw.sw_stack;
import org.libswitch.raw.sw_routing_stats;

/**
 * A Switch Transformer on a device ("cpu", "cuda:N"). Thread-safe: forward passes from
 * several threads run concurrently; changes to the parameters run alone.
 */
public final class Model extends NativeHandle<SWIGTYPE_p_sw_model> {
  Model(SWIGTYPE_p_sw_model pointer) {
    super(pointer, libswitch_raw::sw_model_destroy);
  }

  /** A new model of config, parameters initialised from seed. */
  public Model(Config config, String device, long seed) {
    this(config, device, seed, "f32");
  }

  /** The same in dtype: "f32", "f64" (cpu) or "bf16" (GPU, inference). */
  public Model(Config config, String device, long seed, String dtype) {
    this(LibSwitch.checked(libswitch_raw.swb_model_create_with_dtype(
        config.handle(), device, dtype, BigInteger.valueOf(seed))));
  }

  /** A new model with these weights on device in dtype. */
  public Model copyTo(String device, String dtype) {
    return new Model(LibSwitch.checked(libswitch_raw.swb_model_copy_to(handle(), device, dtype)));
  }

  /**
   * A model from whatever path holds: a checkpoint directory (or the latest under a root),
   * verified; a `switch train --out` run directory (its latest checkpoint); or an HF model
   * directory (config.json with model.safetensors or a sharded index).
   */
  public static Model load(String path, String device) {
    LibSwitch.load();
    return new Model(LibSwitch.checked(libswitch_raw.swb_model_from_pretrained(path, device)));
  }

  /** A HuggingFace SwitchTransformers checkpoint: config.json and safetensors. */
  public static Model importHf(String configJson, String weights, String device) {
    return importHf(configJson, weights, device, "");
  }

  /**
   * The same with ModelConfig fields in protobuf text that replace the HF config's, e.g.
   * "aux_loss_mode: AUX_PER_LAYER" to train the imported model.
   */
  public static Model importHf(String configJson, String weights, String device, String overrides) {
    LibSwitch.load();
    return new Model(LibSwitch.checked(
        libswitch_raw.swb_model_import_hf_with(configJson, weights, device, overrides)));
  }

  /** Saves the parameters as a checkpoint under root; returns its directory. */
  public String save(String root) {
    LibSwitch.check(libswitch_raw.sw_model_save(handle(), root));
    return LibSwitch.latestCheckpoint(root);
  }

  public void loadParameters(String path, boolean strict) {
    LibSwitch.check(libswitch_raw.sw_model_load_parameters(handle(), path, strict ? 1 : 0));
  }

  public void exportHf(String directory) {
    exportHf(directory, false);
  }

  /**
   * The same, writing a model transformers would route otherwise (a capacity factor, batch
   * routing groups) when allowRoutingChange; refused naming the setting otherwise.
   */
  public void exportHf(String directory, boolean allowRoutingChange) {
    LibSwitch.check(libswitch_raw.sw_model_export_hf_with(handle(), directory, allowRoutingChange ? 1 : 0));
  }

  public Config config() {
    return new Config(LibSwitch.checked(libswitch_raw.swb_model_config(handle())));
  }

  public String device() {
    return LibSwitch.checked(libswitch_raw.swb_model_device(handle()));
  }

  /** "f32", "f64" or "bf16". */
  public String dtype() {
    return LibSwitch.checked(libswitch_raw.swb_model_dtype(handle()));
  }

  /** The seed its parameters were initialised from. */
  public long seed() {
    return LibSwitch.checked(libswitch_raw.swb_model_seed(handle())).longValue();
  }

  /** Threads each call uses (0: OpenMP's default). */
  public int threads() {
    return LibSwitch.checked(libswitch_raw.swb_model_threads(handle()));
  }

  /** The result of {@link #validate}: the per-block report and the verdict. */
  public static final class Validation {
    public final String report;
    public final boolean withinTolerance;

    Validation(String report, boolean withinTolerance) {
      this.report = report;
      this.withinTolerance = withinTolerance;
    }
  }

  /**
   * The batch through the CPU f32 reference and device ("cuda:0") in dtype ("f32" or "bf16")
   * with this model's parameters: per-block differences and routing agreement, within
   * tolerance (0: 1e-4 for f32, 2e-2 for bf16) when every block is and routing agrees.
   */
  public Validation validate(Batch b, String device, String dtype, double tolerance) {
    String report = LibSwitch.checked(libswitch_raw.swb_model_validate(handle(), b.batch,
        b.inputLen, b.targetLen, b.inputIds, b.attentionMask, b.decoderInputIds,
        b.decoderAttentionMask, b.labels, device, dtype, tolerance));
    return new Validation(report, libswitch_raw.swb_validate_within() != 0);
  }

  public void setThreads(int threads) {
    LibSwitch.check(libswitch_raw.sw_model_set_threads(handle(), threads));
  }

  /** Scalars in all parameters. */
  public long numParameters() {
    return LibSwitch.checked(libswitch_raw.swb_model_parameter_count(handle()));
  }

  public List<String> parameterNames() {
    long n = LibSwitch.checked(libswitch_raw.swb_model_num_parameters(handle()));
    List<String> names = new ArrayList<>();
    for (long i = 0; i < n; ++i) names.add(LibSwitch.checked(libswitch_raw.swb_parameter_name(handle(), i)));
    return names;
  }

  public long[] parameterShape(String name) {
    int ndim = (int) (long) LibSwitch.checked(libswitch_raw.swb_parameter_dim(handle(), name, -1));
    long[] shape = new long[ndim];
    for (int i = 0; i < ndim; ++i) shape[i] = LibSwitch.checked(libswitch_raw.swb_parameter_dim(handle(), name, i));
    return shape;
  }

  private int numel(String name) {
    long n = 1;
    for (long d : parameterShape(name)) n *= d;
    return Math.toIntExact(n);
  }

  /** A copy of the parameter as float32, row-major. */
  public float[] getParameter(String name) {
    float[] values = new float[numel(name)];
    LibSwitch.checked(libswitch_raw.swb_get_parameter(handle(), name, values));
    return values;
  }

  public void setParameter(String name, float[] values) {
    LibSwitch.checked(libswitch_raw.swb_set_parameter(handle(), name, values));
  }

  /** The gradient from the last forward with computeGradients. */
  public float[] gradient(String name) {
    float[] values = new float[numel(name)];
    LibSwitch.checked(libswitch_raw.swb_get_gradient(handle(), name, values));
    return values;
  }

  public ForwardOutput forward(Batch b) {
    return forward(b, false, false);
  }

  /** One forward pass; train: dropout and jitter; computeGradients: keep gradients. */
  public ForwardOutput forward(Batch b, boolean train, boolean computeGradients) {
    SWIGTYPE_p_sw_result result = LibSwitch.checked(libswitch_raw.swb_model_forward(handle(),
        b.batch, b.inputLen, b.targetLen, b.inputIds, b.attentionMask, b.decoderInputIds,
        b.decoderAttentionMask, b.labels, train ? 1 : 0, computeGradients ? 1 : 0));
    try {
      long[] shape = new long[3];
      for (int i = 0; i < 3; ++i) shape[i] = LibSwitch.checked(libswitch_raw.swb_result_logits_dim(result, i));
      float[] logits = new float[Math.toIntExact(shape[0] * shape[1] * shape[2])];
      LibSwitch.checked(libswitch_raw.swb_result_logits(result, logits));
      double[] losses = new double[4];
      for (int i = 0; i < 4; ++i) losses[i] = LibSwitch.checked(libswitch_raw.swb_result_loss(result, i));
      List<ForwardOutput.LayerRouting> routing = new ArrayList<>();
      long layers = LibSwitch.checked(libswitch_raw.swb_result_num_routing_layers(result));
      for (long l = 0; l < layers; ++l) {
        sw_routing_stats first = LibSwitch.checked(libswitch_raw.swb_result_routing(result, l, null));
        long[] counts = new long[(int) first.getNum_experts()];
        first.delete();
        sw_routing_stats s = LibSwitch.checked(libswitch_raw.swb_result_routing(result, l, counts));
        routing.add(new ForwardOutput.LayerRouting(
            s.getStack() == sw_stack.SW_ENCODER ? "encoder" : "decoder", s.getBlock(),
            s.getNum_experts(), s.getCapacity(), s.getGroup_size(), s.getTokens(),
            s.getDropped_fraction(), s.getRouter_entropy(), s.getAux_loss(), s.getZ_loss(), counts));
        s.delete();
      }
      return new ForwardOutput(logits, shape, losses[0], losses[1], losses[2], losses[3], routing);
    } finally {
      libswitch_raw.sw_result_destroy(result);
    }
  }

  /** Greedy generation: new ids per input row (eos ends a row and is not included). */
  public int[][] generate(int[][] inputIds, int maxNewTokens) {
    return generate(inputIds, new GenerateOptions().maxNewTokens(maxNewTokens));
  }

  /**
   * Generation with the decoder's key/value cache under the options (greedy, beam search or
   * sampling): new ids per input row; eos ends a row and is not included.
   */
  public int[][] generate(int[][] inputIds, GenerateOptions o) {
    Batch b = new Batch(inputIds, new int[inputIds.length][1]);
    if (o.attentionMask != null) b.attentionMask(o.attentionMask);
    if (o.maxNewTokens < 1) LibSwitch.invalid("generate: maxNewTokens must be >= 1, got " + o.maxNewTokens);
    int[] out = new int[b.batch * o.maxNewTokens];
    long[] lengths = new long[b.batch];
    LibSwitch.checked(libswitch_raw.swb_model_generate(handle(), b.batch, b.inputLen, b.inputIds,
        b.attentionMask, o.maxNewTokens, o.vocabLimit, out, lengths, o.numBeams, o.temperature,
        o.topK, o.topP, BigInteger.valueOf(o.seed), o.minNewTokens, o.lengthPenalty,
        o.dropless ? 1 : 0, o.earlyStopping ? 1 : 0, o.cancel != null ? o.cancel.handle() : null));
    int[][] rows = new int[b.batch][];
    for (int i = 0; i < b.batch; ++i) {
      rows[i] = java.util.Arrays.copyOfRange(
          out, i * o.maxNewTokens, i * o.maxNewTokens + (int) lengths[i]);
    }
    return rows;
  }
}
