/* libswitch.h as a C program sees it: compiled as C99 and C11 with -pedantic -Werror by
 * gcc and clang (tests/CMakeLists.txt). Every struct initialises with SW_INIT_STRUCT, and
 * on LP64 the layouts are the ones the library was built with (capi/status.cc). */
#include <stddef.h>
#include <stdint.h>

#include "libswitch.h"

#if UINTPTR_MAX == 0xFFFFFFFFFFFFFFFFu
typedef char sw_check_batch[(sizeof(sw_batch) == 72 && offsetof(sw_batch, labels) == 64) ? 1 : -1];
typedef char sw_check_routing[(sizeof(sw_routing_stats) == 80) ? 1 : -1];
typedef char sw_check_metrics[(sizeof(sw_metrics) == 112) ? 1 : -1];
typedef char sw_check_generate[(sizeof(sw_generate_options) == 96 &&
                                offsetof(sw_generate_options, cancel) == 88) ? 1 : -1];
#endif

int sw_header_check(void);
int sw_header_check(void) {
  sw_batch batch;
  sw_metrics metrics;
  sw_routing_stats stats;
  sw_generate_options options;
  sw_status status = SW_OK;
  SW_INIT_STRUCT(&batch);
  SW_INIT_STRUCT(&metrics);
  SW_INIT_STRUCT(&stats);
  SW_INIT_STRUCT(&options);
  return (int)status + (int)batch.struct_size + (int)metrics.struct_size + (int)stats.struct_size +
         (int)options.struct_size;
}
