// Formatting of pinning events (bobbin/pinning.h).
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bobbin/pinning.h"

namespace bobbin {

std::string_view to_string(pin_reason r) noexcept {
  switch (r) {
    case pin_reason::cpu: return "cpu";
    case pin_reason::syscall: return "syscall";
    case pin_reason::declared: return "declared";
  }
  return "?";
}

std::string format_pin_event(const pin_event& e, bool full) {
  const double ms = std::chrono::duration<double, std::milli>(e.duration).count();
  std::string out;
  if (!e.ended) {
    out = absl::StrFormat("bobbin: fiber %d \"%s\" pinned carrier %d for %.1f ms [%s]: %s\n", e.fiber_id,
                          e.fiber_name, e.carrier, ms, std::string(to_string(e.reason)), e.detail);
    if (full) {
      for (const std::string& frame : e.stack) absl::StrAppend(&out, "    ", frame, "\n");
    }
  } else {
    out = absl::StrFormat("bobbin: fiber %d \"%s\" released carrier %d after %.1f ms [%s]\n", e.fiber_id,
                          e.fiber_name, e.carrier, ms, std::string(to_string(e.reason)));
  }
  return out;
}

}  // namespace bobbin
