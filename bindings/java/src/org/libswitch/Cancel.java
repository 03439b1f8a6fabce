package org.libswitch;

import org.libswitch.raw.SWIGTYPE_p_sw_cancel;
import org.libswitch.raw.libswitch_raw;

/**
 * A flag that stops a running {@link Model#generate(int[][], GenerateOptions)} (given with
 * {@link GenerateOptions#cancel(Cancel)}) before its next decoding step, which then throws
 * {@link LibSwitchException} with {@link Status#CANCELLED}. {@link #request()} may be called
 * from any thread; the flag stays requested until {@link #reset()}.
 */
public final class Cancel extends NativeHandle<SWIGTYPE_p_sw_cancel> {
  public Cancel() {
    super(create(), libswitch_raw::sw_cancel_destroy);
  }

  private static SWIGTYPE_p_sw_cancel create() {
    LibSwitch.load();
    return LibSwitch.checked(libswitch_raw.swb_cancel_create());
  }

  public void request() {
    LibSwitch.check(libswitch_raw.sw_cancel_request(handle()));
  }

  public void reset() {
    LibSwitch.check(libswitch_raw.sw_cancel_reset(handle()));
  }

  public boolean requested() {
    return LibSwitch.checked(libswitch_raw.swb_cancel_is_requested(handle())) != 0;
  }
}
