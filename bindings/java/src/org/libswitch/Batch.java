package org.libswitch;

/**
 * Token ids for the encoder-decoder, row-major {@code [batch, length]} int arrays. Masks
 * (1 token, 0 padding) and labels (-100 ignored) may be null.
 */
public final class Batch {
  final int batch;
  final int inputLen;
  final int targetLen;
  final int[] inputIds;
  final int[] decoderInputIds;
  int[] attentionMask;
  int[] decoderAttentionMask;
  int[] labels;

  /** From {@code [batch][length]} arrays; every row of one array has the same length. */
  public Batch(int[][] inputIds, int[][] decoderInputIds) {
    this.batch = inputIds.length;
    this.inputLen = rowLength(inputIds, "inputIds");
    this.targetLen = rowLength(decoderInputIds, "decoderInputIds");
    if (decoderInputIds.length != batch) {
      LibSwitch.invalid("decoderInputIds: " + decoderInputIds.length
          + " rows, inputIds has " + batch);
    }
    this.inputIds = flatten(inputIds, inputLen, "inputIds");
    this.decoderInputIds = flatten(decoderInputIds, targetLen, "decoderInputIds");
  }

  public Batch labels(int[][] labels) {
    this.labels = flatten(labels, targetLen, "labels");
    return this;
  }

  public Batch attentionMask(int[][] mask) {
    this.attentionMask = flatten(mask, inputLen, "attentionMask");
    return this;
  }

  public Batch decoderAttentionMask(int[][] mask) {
    this.decoderAttentionMask = flatten(mask, targetLen, "decoderAttentionMask");
    return this;
  }

  private static int rowLength(int[][] rows, String name) {
    if (rows.length == 0 || rows[0].length == 0) LibSwitch.invalid(name + ": empty");
    return rows[0].length;
  }

  private int[] flatten(int[][] rows, int length, String name) {
    if (rows.length != batch) LibSwitch.invalid(name + ": " + rows.length + " rows, expected " + batch);
    int[] flat = new int[batch * length];
    for (int i = 0; i < batch; ++i) {
      if (rows[i].length != length) {
        LibSwitch.invalid(name + ": row " + i + " has " + rows[i].length + " ids, expected " + length);
      }
      System.arraycopy(rows[i], 0, flat, i * length, length);
    }
    return flat;
  }
}
