package org.libswitch;

/** The C ABI's sw_status values (append-only, same numbers). */
public enum Status {
  OK,
  INVALID_ARGUMENT,
  OUT_OF_RANGE,
  NOT_FOUND,
  IO,
  CORRUPT,
  UNSUPPORTED,
  DEVICE,
  OUT_OF_MEMORY,
  DISTRIBUTED,
  NUMERIC,
  INTERNAL,
  /** Stopped by {@link Cancel#request()} before it finished. */
  CANCELLED,
  /** A value this version does not know. */
  UNKNOWN;

  static Status of(int code) {
    Status[] all = values();
    return code >= 0 && code < all.length - 1 ? all[code] : UNKNOWN;
  }
}
