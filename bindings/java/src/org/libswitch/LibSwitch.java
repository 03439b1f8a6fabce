package org.libswitch;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import org.libswitch.raw.libswitch_raw;

/**
 * Library-wide queries, and the checks every call goes through. The native libraries load
 * from, in order: the file the system property {@code libswitch.jni} names; the jar itself
 * ({@code org/libswitch/native/<os>-<arch>/}: libswitch_jni.so, libswitch.so and its
 * SentencePiece plugin, copied to a private temporary folder that is removed when the JVM
 * exits normally; a killed JVM leaves it in java.io.tmpdir); or java.library.path, also
 * when the jar's copy cannot load (its error is then attached as suppressed).
 */
public final class LibSwitch {
  static {
    String path = System.getProperty("libswitch.jni");
    if (path != null) {
      System.load(path);
    } else {
      UnsatisfiedLinkError fromJar = null;
      boolean loaded = false;
      try {
        loaded = loadFromJar();
      } catch (UnsatisfiedLinkError e) {
        fromJar = e;  // e.g. a temporary folder mounted noexec: java.library.path may serve
      }
      if (!loaded) {
        try {
          System.loadLibrary("switch_jni");
        } catch (UnsatisfiedLinkError e) {
          if (fromJar != null) e.addSuppressed(fromJar);
          throw e;
        }
      }
    }
  }

  private LibSwitch() {}

  /** The folder of this platform's libraries inside the jar, e.g. "linux-x86_64". */
  static String platform() {
    String os = System.getProperty("os.name").toLowerCase(Locale.ROOT).replaceAll("\\s", "");
    String arch = System.getProperty("os.arch").toLowerCase(Locale.ROOT);
    if (arch.equals("amd64")) arch = "x86_64";
    return os + "-" + arch;
  }

  /**
   * Copies this platform's libraries out of the jar (the folder's {@code files} lists them)
   * and loads the JNI one, which finds libswitch.so beside it ($ORIGIN). False when the jar
   * has none for this platform.
   */
  private static boolean loadFromJar() {
    String folder = "/org/libswitch/native/" + platform() + "/";
    List<String> names = new ArrayList<>();
    try (InputStream index = LibSwitch.class.getResourceAsStream(folder + "files")) {
      if (index == null) return false;
      for (String line : new String(index.readAllBytes(), StandardCharsets.UTF_8).split("\n")) {
        if (!line.isBlank()) names.add(line.strip());
      }
      Path dir = Files.createTempDirectory("libswitch-native");
      dir.toFile().deleteOnExit();
      for (String name : names) {
        try (InputStream in = LibSwitch.class.getResourceAsStream(folder + name)) {
          if (in == null) {
            throw new UnsatisfiedLinkError("libswitch: " + folder + "files lists " + name
                + ", which the jar does not hold");
          }
          Path file = dir.resolve(name);
          Files.copy(in, file);
          file.toFile().deleteOnExit();
        }
      }
      System.load(dir.resolve("libswitch_jni.so").toString());
      return true;
    } catch (IOException e) {
      throw new UnsatisfiedLinkError("libswitch: cannot copy the jar's native libraries out: "
          + e);
    }
  }

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
