package org.libswitch;

import java.util.ArrayList;
import java.util.List;
import org.libswitch.raw.libswitch_raw;

/**
 * Library-wide queries, and the checks every call goes through. The JNI library
 * (libswitch_jni.so) is loaded from java.library.path, or from the file the system
 * property {@code libswitch.jni} names.
 */
public final class LibSwitch {
  static {
    String path = System.getProperty("libswitch.jni");
    if (path != null) {
      System.load(path);
    } else {
      System.loadLibrary("switch_jni");
    }
  }

  private LibSwitch() {}

  /** Makes sure the native library is loaded (the classes that call it use this). */
  static void load() {}

  public static String version() {
    return libswitch_raw.sw_version();
  }

  public static int abiVersion() {
    return libswitch_raw.sw_abi_version();
  }

  public static boolean cudaBuilt() {
    return libswitch_raw.sw_cuda_built() != 0;
  }

  public static int cudaDeviceCount() {
    return checked(libswitch_raw.swb_cuda_device_count());
  }

  /** The presets compiled into the library ("tiny", "switch-base-8", ...). */
  public static List<String> presets() {
    long n = checked(libswitch_raw.swb_preset_count());
    List<String> names = new ArrayList<>();
    for (long i = 0; i < n; ++i) names.add(checked(libswitch_raw.swb_preset_name(i)));
    return names;
  }

  /** The checkpoint directory {@code latest} names under root. */
  public static String latestCheckpoint(String root) {
    return checked(libswitch_raw.swb_checkpoint_latest(root));
  }

  /**
   * How a model trains on a cluster ({@code switch plan}): request is a PlanRequest in
   * protobuf text ("" for the defaults); format "table" (what {@code switch plan} prints) or
   * "proto" (the Plan message as protobuf text).
   */
  public static String plan(String request, String format) {
    return checked(libswitch_raw.swb_plan(request, format));
  }

  /** Throws for a non-OK status returned by a call. */
  static void check(int status) {
    if (status != 0) {
      String message = libswitch_raw.sw_last_error();
      throw new LibSwitchException(Status.of(status),
          message.isEmpty() ? libswitch_raw.sw_status_string(status) : message);
    }
  }

  /** A helper's result, once its recorded status says it succeeded. */
  static <T> T checked(T value) {
    check(libswitch_raw.swb_status());
    return value;
  }

  static void invalid(String message) {
    throw new LibSwitchException(Status.INVALID_ARGUMENT, message);
  }
}
