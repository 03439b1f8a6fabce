package org.libswitch;

import org.libswitch.raw.libswitch_raw;
import org.libswitch.raw.sw_config_kind;

/** A training config (TrainConfig): optimizer, schedule, batch, data; protobuf text. */
public final class TrainConfig extends ConfigBase {
  private TrainConfig(org.libswitch.raw.SWIGTYPE_p_sw_config pointer) {
    super(pointer);
  }

  /** Every default: the tiny model, the built-in data. */
  public static TrainConfig defaults() {
    LibSwitch.load();
    return new TrainConfig(LibSwitch.checked(libswitch_raw.swb_config_train_default()));
  }

  public static TrainConfig fromText(String text) {
    LibSwitch.load();
    return new TrainConfig(LibSwitch.checked(
        libswitch_raw.swb_config_from_text(sw_config_kind.SW_CONFIG_TRAIN, text)));
  }
}
