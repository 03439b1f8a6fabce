package org.libswitch;

/** One training step's (or an evaluation's) numbers. */
public record Metrics(long step, double loss, double ce, double aux, double z, double gradNorm,
    double learningRate, double droppedFraction, long tokens, double seconds,
    double tokensPerSecond) {
  static Metrics of(org.libswitch.raw.sw_metrics m) {
    try {
      return new Metrics(m.getStep(), m.getLoss(), m.getCe(), m.getAux(), m.getZ(),
          m.getGrad_norm(), m.getLearning_rate(), m.getDropped_fraction(), m.getTokens(),
          m.getSeconds(), m.getTokens_per_second());
    } finally {
      m.delete();
    }
  }
}
