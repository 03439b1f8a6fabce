package org.libswitch;

import java.lang.ref.Cleaner;

/**
 * Owns one native object. {@link #close()} releases it (use try-with-resources); a
 * Cleaner releases it too if the object becomes unreachable unclosed, as a backstop.
 */
abstract class NativeHandle<P> implements AutoCloseable {
  private static final Cleaner CLEANER = Cleaner.create();

  /** Releases the native object exactly once. */
  private static final class Release implements Runnable {
    private final Object pointer;
    private final java.util.function.Consumer<Object> destroy;
    private boolean done;

    Release(Object pointer, java.util.function.Consumer<Object> destroy) {
      this.pointer = pointer;
      this.destroy = destroy;
    }

    @Override
    public synchronized void run() {
      if (!done) {
        done = true;
        destroy.accept(pointer);
      }
    }
  }

  private P pointer;
  private final Cleaner.Cleanable cleanable;

  @SuppressWarnings("unchecked")
  NativeHandle(P pointer, java.util.function.Consumer<P> destroy) {
    LibSwitch.load();
    if (pointer == null) throw new LibSwitchException(Status.INTERNAL, "no native object");
    this.pointer = pointer;
    this.cleanable = CLEANER.register(this, new Release(pointer, p -> destroy.accept((P) p)));
  }

  /** The native pointer; an error once closed. */
  P handle() {
    if (pointer == null) {
      LibSwitch.invalid("this " + getClass().getSimpleName() + " is closed");
    }
    return pointer;
  }

  @Override
  public void close() {
    pointer = null;
    cleanable.clean();
  }
}
