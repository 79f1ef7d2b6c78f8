// Not part of the bobbin API.
//
// BOBBIN_CHECK: crash loudly on misuse or a broken invariant. Writes with
// write(2) and aborts, so it is safe inside the scheduler where logging could
// allocate or park (Go's throw("runtime: ...") convention).
#ifndef BOBBIN_RUNTIME_UTIL_CHECK_H_
#define BOBBIN_RUNTIME_UTIL_CHECK_H_

#include <string_view>

#include "bobbin/internal/fiber_body.h"

#define BOBBIN_CHECK(cond, message)                          \
  do {                                                       \
    if (__builtin_expect(!(cond), 0)) ::bobbin::internal::fatal(message); \
  } while (0)

namespace bobbin::internal {
// Writes `text` to stderr with one write(2); never allocates.
void write_stderr(std::string_view text) noexcept;
}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_UTIL_CHECK_H_
