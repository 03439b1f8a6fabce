package org.libswitch;

import org.libswitch.raw.SWIGTYPE_p_sw_communicator;
import org.libswitch.raw.libswitch_raw;

/**
 * The ranks of a launch ({@code mpirun -np N java ...}): MPI's world when started by an MPI
 * launcher, else a single rank. Give it to {@link Trainer#setDataParallel(Communicator)}.
 */
public final class Communicator extends NativeHandle<SWIGTYPE_p_sw_communicator> {
  private Communicator(SWIGTYPE_p_sw_communicator pointer) {
    super(pointer, libswitch_raw::sw_communicator_destroy);
  }

  public static Communicator fromEnv() {
    LibSwitch.load();
    return new Communicator(LibSwitch.checked(libswitch_raw.swb_communicator_from_env()));
  }

  /**
   * The ranks of an MPI communicator of the caller's, from the address of its MPI_Comm
   * (duplicated; the caller initialises MPI, with the MPI libswitch was built with).
   */
  public static Communicator fromMpiAddress(long mpiCommAddress) {
    LibSwitch.load();
    return new Communicator(LibSwitch.checked(
        libswitch_raw.swb_communicator_from_mpi(java.math.BigInteger.valueOf(mpiCommAddress))));
  }

  /** The ranks passing the same color (>= 0), ordered by key (collective). */
  public Communicator split(int color, int key) {
    return new Communicator(LibSwitch.checked(libswitch_raw.swb_communicator_split(handle(), color, key)));
  }

  public int rank() {
    return LibSwitch.checked(libswitch_raw.swb_communicator_rank(handle()));
  }

  public int size() {
    return LibSwitch.checked(libswitch_raw.swb_communicator_size(handle()));
  }

  /** Ends every rank's process (after an error on this one); does not return. */
  public void abort(int code) {
    libswitch_raw.sw_communicator_abort(handle(), code);
  }
}
