// libswitch.h and libswitch.hpp as a C++ program sees them (-pedantic -Werror, gcc and
// clang; tests/CMakeLists.txt).
#include "libswitch.hpp"

int sw_header_check_cpp();
int sw_header_check_cpp() {
  libswitch::Batch batch;
  const sw_batch view = batch.view();
  return static_cast<int>(view.struct_size);
}
