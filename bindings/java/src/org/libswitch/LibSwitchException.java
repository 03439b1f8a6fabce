package org.libswitch;

/**
 * A libswitch call failed. Unchecked (like {@link IllegalArgumentException}): every call
 * can fail on bad input, and the message names the argument and the value. {@link
 * #status()} says which kind of failure it was.
 */
public class LibSwitchException extends RuntimeException {
  private static final long serialVersionUID = 1L;
  private final Status status;

  public LibSwitchException(Status status, String message) {
    super(message);
    this.status = status;
  }

  public Status status() {
    return status;
  }
}
