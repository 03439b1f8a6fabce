package org.libswitch;

import org.libswitch.raw.SWIGTYPE_p_sw_config;
import org.libswitch.raw.libswitch_raw;
import org.libswitch.raw.sw_config_kind;

/** A model config (ModelConfig): a compiled-in preset or protobuf text. */
public final class Config extends ConfigBase {
  Config(SWIGTYPE_p_sw_config pointer) {
    super(pointer);
  }

  public static Config preset(String name) {
    LibSwitch.load();
    return new Config(LibSwitch.checked(libswitch_raw.swb_config_preset(name)));
  }

  public static Config fromText(String text) {
    LibSwitch.load();
    return new Config(LibSwitch.checked(
        libswitch_raw.swb_config_from_text(sw_config_kind.SW_CONFIG_MODEL, text)));
  }

  public Config copy() {
    return new Config(LibSwitch.checked(libswitch_raw.swb_config_clone(handle())));
  }
}
