package org.libswitch;

import java.util.List;

/**
 * One forward pass: logits {@code [batch, targetLen, vocab]} row-major as float32, the
 * losses (loss = ce + aux + z) and each sparse layer's routing, encoder first.
 */
public record ForwardOutput(float[] logits, long[] logitsShape, double loss, double ceLoss,
    double auxLoss, double zLoss, List<LayerRouting> routing) {
  /** One sparse layer's routing; tokensPerExpert are argmax counts before capacity. */
  public record LayerRouting(String stack, long block, long numExperts, long capacity,
      long groupSize, long tokens, double droppedFraction, double routerEntropy,
      double auxLoss, double zLoss, long[] tokensPerExpert) {}
}
