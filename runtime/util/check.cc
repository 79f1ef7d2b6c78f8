#include "runtime/util/check.h"

#include <unistd.h>

#include <cstdlib>

namespace bobbin::internal {

void write_stderr(std::string_view text) noexcept {
  while (!text.empty()) {
    ssize_t n = ::write(2, text.data(), text.size());
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
