#include "runtime/util/check.h"
#include "runtime/intercept/libc.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>

namespace bobbin::internal {

void write_stderr(std::string_view text) noexcept {
  while (!text.empty()) {
    // The raw system call: this runs in signal handlers and on fibers, where
    // the libc write() would be bobbin's interceptor (which may park).
    long n = bobbin::internal::libc::syscall(SYS_write, 2, text.data(), text.size());
    if (n <= 0) return;
    text.remove_prefix(static_cast<size_t>(n));
  }
}

void fatal(std::string_view message) noexcept {
  write_stderr(message);
  write_stderr("\n");
  std::abort();
}

}  // namespace bobbin::internal
