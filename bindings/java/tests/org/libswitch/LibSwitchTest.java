package org.libswitch;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.List;
import org.junit.After;
import org.junit.Before;
import org.junit.Test;

/** The Java binding: configs, forward passes equal to the C ABI's, errors, training. */
public class LibSwitchTest {
  // The batch tests/capi/forward_dump.c runs through the C ABI.
  static int[][] inputIds() {
    int[][] ids = new int[2][8];
    for (int i = 0; i < 16; ++i) ids[i / 8][i % 8] = 3 + (7 * i) % 300;
    return ids;
  }

  static final int[][] MASK = {{1, 1, 1, 1, 1, 1, 1, 0}, {1, 1, 1, 1, 1, 1, 1, 0}};
  static final int[][] DECODER = {{0, 10, 11, 12}, {0, 20, 21, 22}};
  static final int[][] LABELS = {{10, 11, 12, 1}, {20, 21, 22, 1}};

  static Batch batch() {
    return new Batch(inputIds(), DECODER).attentionMask(MASK).labels(LABELS);
  }

  /**
   * The JNI library and libswitch.so came out of the jar (no java.library.path): both are
   * mapped from one temporary folder, not from the build tree. Checked when the test
   * command says it ran on the jar alone (-Dlibswitch.test.jarOnly=true).
   */
  @Test
  public void nativeLibrariesLoadFromTheJar() throws IOException {
    LibSwitch.version();  // loads them
    if (!Boolean.getBoolean("libswitch.test.jarOnly")) return;
    String jni = null;
    String core = null;
    for (String line : Files.readAllLines(Path.of("/proc/self/maps"))) {
      int slash = line.indexOf('/');
      if (slash < 0) continue;
      Path file = Path.of(line.substring(slash));
      String name = file.getFileName().toString();
      if (name.equals("libswitch_jni.so")) jni = file.getParent().toString();
      if (name.startsWith("libswitch.so")) core = file.getParent().toString();
    }
    assertTrue("libswitch_jni.so mapped from " + jni,
        jni != null && jni.contains("libswitch-native"));
    assertEquals("libswitch.so beside the JNI library", jni, core);
  }

  static Model tiny(long seed) {
    try (Config c = Config.preset("tiny")) {
      c.set("dropout_rate", 0.0);
      return new Model(c, "cpu", seed);
    }
  }

  Path dir;

  @Before
  public void makeDir() throws IOException {
    dir = Files.createTempDirectory("libswitch_java_test");
  }

  @After
  public void removeDir() throws IOException {
    try (var paths = Files.walk(dir)) {
      paths.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    }
  }

  static LibSwitchException expect(Status status, String fragment, Runnable call) {
    try {
      call.run();
    } catch (LibSwitchException e) {
      assertEquals(e.getMessage(), status, e.status());
      assertTrue(e.getMessage() + " should mention " + fragment, e.getMessage().contains(fragment));
      return e;
    }
    fail("expected " + status + " (" + fragment + ")");
    return null;
  }

  @Test
  public void versionAndPresets() {
    assertEquals(1, LibSwitch.abiVersion());
    assertTrue(LibSwitch.version().matches("\\d+\\.\\d+\\.\\d+"));
    List<String> presets = LibSwitch.presets();
    assertTrue(presets.contains("tiny") && presets.contains("switch-base-8"));
  }

  @Test
  public void plan() {
    String table = LibSwitch.plan("gpus: 16 model_preset: 'switch-base-8'", "table");
    assertTrue(table.startsWith("switch-base-8 ("));
    assertTrue(table.contains("ep=16 does not divide the 8 experts"));
    String proto = LibSwitch.plan("gpus: 2 layout: 'ep=2'", "proto");
    assertTrue(proto.contains("layouts {") && proto.contains("ep: 2"));
    expect(Status.INVALID_ARGUMENT, "gpus must be >= 1", () -> LibSwitch.plan("gpus: 0", "table"));
    expect(Status.NOT_FOUND, "no built-in rates", () -> LibSwitch.plan("gpu: 'v100'", "table"));
  }

  @Test
  public void configRoundTripAndTypedFields() {
    try (Config c = Config.preset("switch-base-8")) {
      assertEquals(8, c.getInt("num_experts"));
      assertEquals("RELU", c.getString("activation"));
      c.set("num_experts", 16).set("aux_loss_coef", 0.02).set("capacity_mode", "CAPACITY_FIXED");
      assertEquals(16, c.getInt("num_experts"));
      assertEquals(0.02, c.getDouble("aux_loss_coef"), 0);
      String text = c.toText();
      try (Config back = Config.fromText(text)) {
        assertEquals(text, back.toText());
      }
      String before = c.toText();
      expect(Status.INVALID_ARGUMENT, "no field \"nope\"", () -> c.set("nope", 1));
      expect(Status.OUT_OF_RANGE, "\"SWISH\" is not a value", () -> c.set("activation", "SWISH"));
      assertEquals(before, c.toText());
    }
    try (TrainConfig t = TrainConfig.fromText("steps: 7")) {
      t.set("model.num_experts", 4);
      assertEquals(4, t.getInt("model.num_experts"));
      assertEquals("ADAFACTOR", t.getString("optimizer"));
    }
    expect(Status.NOT_FOUND, "no-such-model", () -> Config.preset("no-such-model"));
  }

  @Test
  public void dtypesAndCopies() {
    try (Config c = Config.preset("tiny");
        Model m = new Model(c, "cpu", 4, "f64");
        Model copy = m.copyTo("cpu", "f32")) {
      assertEquals("f64", m.dtype());
      assertEquals("f32", copy.dtype());
      assertEquals(4, copy.seed());
      expect(Status.INVALID_ARGUMENT, "dtype: expected", () -> new Model(c, "cpu", 0, "fp16"));
    }
  }

  @Test
  public void forwardEqualsTheCAbiBitForBit() throws Exception {
    String dump = System.getenv("SW_FORWARD_DUMP");
    if (dump == null) return;  // only under ctest
    Path logitsFile = dir.resolve("logits");
    Process p = new ProcessBuilder(dump, "5", logitsFile.toString()).start();
    String[] losses = new String(p.getInputStream().readAllBytes()).trim().split(" ");
    assertEquals(0, p.waitFor());
    try (Model m = tiny(5)) {
      ForwardOutput out = m.forward(batch());
      ByteBuffer bytes = ByteBuffer.wrap(Files.readAllBytes(logitsFile)).order(ByteOrder.nativeOrder());
      float[] expected = new float[out.logits().length];
      bytes.asFloatBuffer().get(expected);
      assertArrayEquals(expected, out.logits(), 0.0f);
      assertEquals(Double.parseDouble(losses[0]), out.loss(), 0.0);
      assertEquals(Double.parseDouble(losses[3]), out.zLoss(), 0.0);
    }
  }

  @Test
  public void forwardOutputsAndRouting() {
    try (Model m = tiny(0)) {
      ForwardOutput out = m.forward(batch());
      assertArrayEquals(new long[] {2, 4, 384}, out.logitsShape());
      assertEquals(out.ceLoss() + out.auxLoss() + out.zLoss(), out.loss(), 1e-12);
      assertEquals(4, out.routing().size());
      for (ForwardOutput.LayerRouting r : out.routing()) {
        long sum = 0;
        for (long n : r.tokensPerExpert()) sum += n;
        assertEquals(r.tokens(), sum);
      }
    }
  }

  @Test
  public void badInputThrowsNamingTheArgument() {
    try (Model m = tiny(0)) {
      int[][] bad = inputIds();
      bad[0][3] = 384;
      expect(Status.OUT_OF_RANGE, "input_ids: token id 384", () -> m.forward(new Batch(bad, DECODER)));
      expect(Status.INVALID_ARGUMENT, "row 1 has 3 ids", () -> new Batch(inputIds(), new int[][] {{0, 1, 2, 3}, {0, 1, 2}}));
      expect(Status.INVALID_ARGUMENT, "attention_mask",
          () -> m.forward(new Batch(inputIds(), DECODER).attentionMask(new int[][] {{7, 1, 1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 1, 1, 1, 1}})));
      expect(Status.NOT_FOUND, "no.such.weight", () -> m.getParameter("no.such.weight"));
      expect(Status.INVALID_ARGUMENT, "length 3 given", () -> m.setParameter("shared.weight", new float[3]));
      expect(Status.NOT_FOUND, "no gradients yet", () -> m.gradient("shared.weight"));
      // Empty batches; a checkpoint of another model loaded strictly (nothing changes).
      expect(Status.INVALID_ARGUMENT, "inputIds: empty", () -> m.forward(new Batch(new int[0][0], new int[0][0])));
      float[] before = m.forward(batch()).logits();
      try (Config wider = Config.preset("tiny")) {
        wider.set("d_ff", 128);
        try (Model other = new Model(wider, "cpu", 0)) {
          String path = other.save(dir.resolve("other").toString());
          expect(Status.INVALID_ARGUMENT, "wi.weight", () -> m.loadParameters(path, true));
        }
      }
      assertArrayEquals(before, m.forward(batch()).logits(), 0.0f);
      if (!LibSwitch.cudaBuilt()) {
        try (Config c = Config.preset("tiny")) {
          expect(Status.UNSUPPORTED, "built without CUDA", () -> new Model(c, "cuda:0", 0));
        }
      }
      m.close();
      expect(Status.INVALID_ARGUMENT, "closed", () -> m.forward(batch()));
    }
  }

  @Test
  public void trainerLogsToTensorBoard() throws IOException {
    Path tb = dir.resolve("tb");
    try (Model m = tiny(0);
        TrainConfig t = TrainConfig.fromText("batch_size: 2");
        Trainer trainer = new Trainer(m, t)) {
      trainer.logTo(tb.toString());
      trainer.step(batch());
      trainer.evaluate(batch());
      trainer.logTo(null);
    }
    // One event file: the version record, then the step's and the evaluation's (their
    // values are read back by TensorBoard's own reader in the Python tests).
    Path events;
    try (var files = Files.list(tb)) {
      events = files.filter(f -> f.getFileName().toString().startsWith("events.out.tfevents."))
                   .findFirst().get();
    }
    String text = new String(Files.readAllBytes(events), java.nio.charset.StandardCharsets.ISO_8859_1);
    assertTrue(text.contains("brain.Event:2"));
    assertTrue(text.contains("train/loss"));
    assertTrue(text.contains("eval/loss"));
  }

  @Test
  public void trainingLowersTheLossAndCheckpointsRoundTrip() throws IOException {
    try (Model m = tiny(0);
        TrainConfig t = TrainConfig.fromText("optimizer: ADAMW learning_rate: 0.003 batch_size: 2");
        Trainer trainer = new Trainer(m, t)) {
      Metrics first = trainer.step(batch());
      Metrics last = first;
      for (int i = 0; i < 9; ++i) last = trainer.step(batch());
      assertEquals(10, last.step());
      assertTrue(last.loss() < first.loss() - 0.5);
      assertTrue(trainer.save(dir.resolve("run").toString()).endsWith("step-00000010"));
      float[] before = m.forward(batch()).logits();
      String path = m.save(dir.resolve("model").toString());
      try (Model loaded = Model.load(path, "cpu")) {
        assertArrayEquals(before, loaded.forward(batch()).logits(), 0.0f);
      }
      try (Trainer restored = Trainer.restore(dir.resolve("run").toString(), "cpu")) {
        assertEquals(11, restored.step(batch()).step());
      }
      // HF export: tiny's capacity factor is refused by name, then written when allowed.
      String hf = dir.resolve("hf").toString();
      expect(Status.UNSUPPORTED, "capacity_mode CAPACITY_FACTOR", () -> m.exportHf(hf));
      m.exportHf(hf, true);
      try (Model imported = Model.importHf(hf + "/config.json", hf, "cpu");
          Model viaLoad = Model.load(hf, "cpu")) {
        // Model.load takes the HF directory as well, as the same model.
        assertArrayEquals(imported.forward(batch()).logits(), viaLoad.forward(batch()).logits(), 0.0f);
      }
      // One flipped byte in a shard: refused, naming the checksum.
      Path shard;
      try (var files = Files.list(Path.of(path))) {
        shard = files.filter(f -> f.getFileName().toString().endsWith(".bin")).findFirst().get();
      }
      try (RandomAccessFile f = new RandomAccessFile(shard.toFile(), "rw")) {
        f.seek(100);
        int b = f.read();
        f.seek(100);
        f.write(b ^ 0xff);
      }
      expect(Status.CORRUPT, "checksum", () -> Model.load(path, "cpu"));
    }
  }

  @Test
  public void generateIsGreedyAndRepeatable() {
    try (Model m = tiny(0)) {
      int[][] a = m.generate(inputIds(), 5);
      int[][] b = m.generate(inputIds(), 5);
      assertEquals(2, a.length);
      for (int i = 0; i < 2; ++i) {
        assertTrue(a[i].length <= 5);
        assertArrayEquals(a[i], b[i]);
      }
    }
  }

  @Test
  public void generateOptionsBeamsAndSampling() {
    try (Model m = tiny(0)) {
      int[][] greedy = m.generate(inputIds(), 5);
      int[][] oneBeam = m.generate(inputIds(), new GenerateOptions().maxNewTokens(5).numBeams(1));
      for (int i = 0; i < 2; ++i) assertArrayEquals(greedy[i], oneBeam[i]);
      GenerateOptions sample = new GenerateOptions().maxNewTokens(6).temperature(0.9).topK(50)
          .topP(0.95).seed(7).minNewTokens(6);
      int[][] a = m.generate(inputIds(), sample);
      int[][] b = m.generate(inputIds(), sample);
      for (int i = 0; i < 2; ++i) {
        assertEquals(6, a[i].length);
        assertArrayEquals(a[i], b[i]);
      }
      assertEquals(2, m.generate(inputIds(), new GenerateOptions().maxNewTokens(4).numBeams(3)
          .lengthPenalty(0.6).dropless(true)).length);
      assertEquals(2, m.generate(inputIds(), new GenerateOptions().maxNewTokens(4).numBeams(3)
          .earlyStopping(true)).length);
      expect(Status.INVALID_ARGUMENT, "top_p",
          () -> m.generate(inputIds(), new GenerateOptions().temperature(1).topP(2)));
    }
  }

  /** The calls the C ABI offers that the other tests do not reach. */
  @Test
  public void restOfTheSurface() {
    try (Model m = tiny(3); Config c = m.config()) {
      assertEquals(3, m.seed());
      m.setThreads(2);
      assertEquals(2, m.threads());
      assertEquals(ConfigBase.FieldType.INT, c.fieldType("d_model"));
      try (TrainConfig defaults = TrainConfig.defaults()) {
        assertEquals(ConfigBase.FieldType.MESSAGE, defaults.fieldType("model"));
      }
      assertEquals(ConfigBase.FieldType.ENUM, c.fieldType("activation"));
      expect(Status.INVALID_ARGUMENT, "nope", () -> c.fieldType("nope"));
      expect(Status.INVALID_ARGUMENT, "must not be the cpu",
          () -> m.validate(batch(), "cpu", "f32", 0));
      if (LibSwitch.cudaDeviceCount() == 0) {
        try {
          m.validate(batch(), "cuda:0", "f32", 0);
          fail("validated against a device that is not there");
        } catch (LibSwitchException e) {
          assertNotEquals(Status.OK, e.status());
        }
      } else {
        Model.Validation v = m.validate(batch(), "cuda:0", "f32", 0);
        assertTrue(v.report, v.withinTolerance);
      }
      try (Communicator world = Communicator.fromEnv();
          TrainConfig t = TrainConfig.fromText("batch_size: 2");
          Trainer trainer = new Trainer(m, t)) {
        assertEquals(0, world.rank());
        assertEquals(1, world.size());
        try (Communicator alone = world.split(0, 0)) {
          assertEquals(1, alone.size());
        }
        expect(Status.INVALID_ARGUMENT, "ep=2", () -> trainer.setParallel(world, "ep=2"));
        trainer.setDataParallel(world);
        assertEquals(1, trainer.step(batch()).step());
      }
    }
  }

  @Test
  public void generateIsCancelledFromAnotherThread() throws InterruptedException {
    try (Model m = tiny(0); Cancel cancel = new Cancel()) {
      assertFalse(cancel.requested());
      Thread canceller = new Thread(() -> {
        try {
          Thread.sleep(200);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
        cancel.request();
      });
      canceller.start();
      // eos cannot end a row before 65536 tokens: only the cancel stops this call
      expect(Status.CANCELLED, "generate: cancelled after", () -> m.generate(inputIds(),
          new GenerateOptions().maxNewTokens(65536).minNewTokens(65536).cancel(cancel)));
      canceller.join();
      assertTrue(cancel.requested());
      cancel.reset();
      int[][] rows = m.generate(inputIds(),
          new GenerateOptions().maxNewTokens(3).minNewTokens(3).cancel(cancel));
      assertEquals(3, rows[0].length);
    }
  }

  static long residentMiB() throws IOException {
    String[] statm = Files.readString(Path.of("/proc/self/statm")).trim().split(" ");
    return Long.parseLong(statm[1]) * 4096 / (1 << 20);
  }

  @Test
  public void createDestroy1000TimesDoesNotGrow() throws IOException {
    try (Config c = Config.preset("tiny")) {
      c.set("num_encoder_layers", 1).set("num_decoder_layers", 1);
      for (int i = 0; i < 100; ++i) new Model(c, "cpu", 0).close();
      long before = residentMiB();
      for (int i = 0; i < 1000; ++i) {
        try (Model m = new Model(c, "cpu", 0)) {
          m.forward(new Batch(inputIds(), DECODER));
        }
      }
      long growth = residentMiB() - before;
      assertTrue("resident memory grew " + growth + " MiB over 1000 models", growth < 16);
    }
  }

  @Test
  public void distinctSeedsGiveDistinctModels() {
    try (Model a = tiny(1); Model b = tiny(2)) {
      assertNotEquals(a.forward(batch()).loss(), b.forward(batch()).loss(), 0.0);
      assertFalse(a.parameterNames().isEmpty());
    }
  }
}
