// Planning a cluster run (core/dist/plan.h) through the C ABI.
#include "core/dist/plan.h"

#include "capi/internal.h"

using namespace sw::capi;  // NOLINT: this file implements the namespace's C face

extern "C" {

sw_status sw_plan(const char* request_text, const char* format, char* buf, size_t cap,
                  size_t* needed) {
  return guard(__func__, [&] {
    const sw::PlanRequest request =
        sw::plan_request_from_text(string_arg(request_text, "request_text"));
    const std::string f = string_arg(format, "format");
    SW_CHECK_ARG(f == "proto" || f == "table", "format: '", f, "' is not one of proto, table");
    const sw::Plan plan = sw::make_plan(request);
    write_string(f == "table" ? sw::plan_table(plan) : sw::text_with_defaults(plan), buf, cap,
                 needed, "buf");
  });
}

}  // extern "C"
