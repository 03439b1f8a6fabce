package org.libswitch;

/**
 * How {@link Model#generate(int[][], GenerateOptions)} decodes (sw_generate_options): greedy
 * by default; beam search with {@code numBeams > 1}; sampling from the seeded Philox stream
 * with {@code temperature > 0}, optionally limited by top-k and top-p.
 */
public final class GenerateOptions {
  int maxNewTokens = 32;
  int numBeams = 1;
  double lengthPenalty = 1.0;
  double temperature = 0.0;
  int topK = 0;
  double topP = 1.0;
  long seed = 0;
  int minNewTokens = 0;
  int vocabLimit = 0;
  boolean dropless = false;
  boolean earlyStopping = false;
  int[][] attentionMask;
  Cancel cancel;

  /** New ids per row at most. */
  public GenerateOptions maxNewTokens(int n) {
    maxNewTokens = n;
    return this;
  }

  /** Beam width (1: no beam search). */
  public GenerateOptions numBeams(int n) {
    numBeams = n;
    return this;
  }

  /** Beam search: scores divided by length to this power. */
  public GenerateOptions lengthPenalty(double p) {
    lengthPenalty = p;
    return this;
  }

  /** Sampling temperature (0: no sampling). */
  public GenerateOptions temperature(double t) {
    temperature = t;
    return this;
  }

  /** Sampling: only the k most likely ids (0: all). */
  public GenerateOptions topK(int k) {
    topK = k;
    return this;
  }

  /** Sampling: the smallest set of ids holding this probability. */
  public GenerateOptions topP(double p) {
    topP = p;
    return this;
  }

  /** Sampling: the same seed gives the same ids. */
  public GenerateOptions seed(long s) {
    seed = s;
    return this;
  }

  /** End of sequence is not taken before this many new ids. */
  public GenerateOptions minNewTokens(int n) {
    minNewTokens = n;
    return this;
  }

  /** Ids at or above this are never produced (0: the model's vocabulary). */
  public GenerateOptions vocabLimit(int v) {
    vocabLimit = v;
    return this;
  }

  /** Beam search ends once numBeams hypotheses are finished (no look at the live beams). */
  public GenerateOptions earlyStopping(boolean e) {
    earlyStopping = e;
    return this;
  }

  /** No token is dropped by expert capacity at inference. */
  public GenerateOptions dropless(boolean d) {
    dropless = d;
    return this;
  }

  /** Stops the call (Status.CANCELLED) once requested, before its next decoding step. */
  public GenerateOptions cancel(Cancel c) {
    cancel = c;
    return this;
  }

  /** 1 = attend, 0 = padding, one row per input row (null: no padding). */
  public GenerateOptions attentionMask(int[][] mask) {
    attentionMask = mask;
    return this;
  }
}
