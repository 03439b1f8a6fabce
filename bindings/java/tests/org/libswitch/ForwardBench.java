package org.libswitch;

import java.util.Arrays;

/**
 * Per-call cost of Model.forward through the Java binding on the input
 * tests/bench/capi_bench.cc's CApiForward/tiny_small times through the C ABI. Prints
 * microseconds per call: the median of 5 rounds of 400 calls. Run by scripts/bench-bindings.
 */
public final class ForwardBench {
  public static void main(String[] args) {
    int[][] inputs = new int[1][16];
    int[][] decoder = new int[1][4];
    for (int i = 0; i < 16; ++i) inputs[0][i] = (int) ((long) i * 7919 % 384);
    for (int i = 0; i < 4; ++i) decoder[0][i] = (int) ((long) i * 104729 % 384);
    Batch batch = new Batch(inputs, decoder).labels(decoder);
    try (Config c = Config.preset("tiny"); Model m = new Model(c, "cpu", 0)) {
      for (int i = 0; i < 200; ++i) m.forward(batch);  // the JIT warms up too
      double[] rounds = new double[5];
      for (int r = 0; r < 5; ++r) {
        long start = System.nanoTime();
        for (int i = 0; i < 400; ++i) m.forward(batch);
        rounds[r] = (System.nanoTime() - start) / 400.0 / 1e3;
      }
      Arrays.sort(rounds);
      System.out.printf("java %.1f%n", rounds[2]);
    }
  }
}
