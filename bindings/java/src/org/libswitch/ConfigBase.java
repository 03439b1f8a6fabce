package org.libswitch;

import org.libswitch.raw.SWIGTYPE_p_sw_config;
import org.libswitch.raw.libswitch_raw;

/**
 * A config (model or training) with typed fields by name or dotted path
 * ("model.num_experts"); enums read and set as their value names. A bad name, type or
 * value throws and changes nothing. Not synchronised: one thread at a time.
 */
public abstract class ConfigBase extends NativeHandle<SWIGTYPE_p_sw_config> {
  ConfigBase(SWIGTYPE_p_sw_config pointer) {
    super(pointer, libswitch_raw::sw_config_destroy);
  }

  /** The C ABI's sw_field_type, in its order. */
  public enum FieldType { INT, DOUBLE, STRING, BOOL, ENUM, MESSAGE }

  /** What a field holds (enums read and set as names); an unknown field throws. */
  public FieldType fieldType(String field) {
    int t = LibSwitch.checked(libswitch_raw.swb_config_field_type(handle(), field));
    FieldType[] all = FieldType.values();
    if (t < 0 || t >= all.length) throw new LibSwitchException(Status.INTERNAL, "field type " + t);
    return all[t];
  }

  public long getInt(String field) {
    return LibSwitch.checked(libswitch_raw.swb_config_get_int(handle(), field));
  }

  public double getDouble(String field) {
    return LibSwitch.checked(libswitch_raw.swb_config_get_double(handle(), field));
  }

  public boolean getBool(String field) {
    return LibSwitch.checked(libswitch_raw.swb_config_get_bool(handle(), field)) != 0;
  }

  /** A string field, or an enum field's value name. */
  public String getString(String field) {
    return LibSwitch.checked(libswitch_raw.swb_config_get_string(handle(), field));
  }

  public ConfigBase set(String field, long value) {
    LibSwitch.check(libswitch_raw.sw_config_set_int(handle(), field, value));
    return this;
  }

  public ConfigBase set(String field, double value) {
    LibSwitch.check(libswitch_raw.sw_config_set_double(handle(), field, value));
    return this;
  }

  public ConfigBase set(String field, boolean value) {
    LibSwitch.check(libswitch_raw.sw_config_set_bool(handle(), field, value ? 1 : 0));
    return this;
  }

  /** A string field, or an enum field by value name. */
  public ConfigBase set(String field, String value) {
    LibSwitch.check(libswitch_raw.sw_config_set_string(handle(), field, value));
    return this;
  }

  /** Protobuf text of every field, defaults included. */
  public String toText() {
    return LibSwitch.checked(libswitch_raw.swb_config_to_text(handle()));
  }

  public void validate() {
    LibSwitch.check(libswitch_raw.sw_config_validate(handle()));
  }

  @Override
  public String toString() {
    return toText();
  }
}
