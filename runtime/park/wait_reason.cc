#include "bobbin/wait_reason.h"

namespace bobbin {

std::string_view to_string(wait_reason r) noexcept {
  // Indexed by the enum; one unique text per park site family.
  static constexpr std::string_view kNames[] = {
      "none",           "yield",          "sleep",        "join",          "mutex lock",
      "condition wait", "semaphore acquire", "latch wait", "wait group wait", "channel send",
      "channel receive", "net accept",    "net connect",  "net read",      "net write",
      "net close",      "file io",      "offload",
      "libc read",      "libc write",   "libc accept",  "libc connect",  "libc poll",
      "libc sleep",     "libc fsync",   "os lock",      "os condition wait",
      "futex wait",
  };
  static_assert(sizeof(kNames) / sizeof(kNames[0]) == static_cast<size_t>(wait_reason::count_));
  auto i = static_cast<size_t>(r);
  return i < static_cast<size_t>(wait_reason::count_) ? kNames[i] : "unknown";
}

}  // namespace bobbin
