// The close() interceptor: on the epoll backend, a close of a user's fd
// ends the fibers' waits on it (runtime/io/closed_fds.h says why). Where no
// epoll backend runs in the process, one relaxed load and the plain call,
// from any thread.
#undef _FORTIFY_SOURCE
#include <unistd.h>

#include <cerrno>

#include "runtime/intercept/fiber_calls.h"
#include "runtime/intercept/libc.h"
#include "runtime/io/closed_fds.h"

namespace bobbin::internal::intercept {
namespace real {
BOBBIN_NEXT_SYMBOL(close)
}  // namespace real
}  // namespace bobbin::internal::intercept

BOBBIN_INTERPOSE int close(int fd) {
  if (__builtin_expect(!bobbin::internal::closed_fds::epoll_in_use(), 1)) {
    return bobbin::internal::intercept::real::close(fd);
  }
  const uint32_t close_count = bobbin::internal::closed_fds::before_close(fd);
  const int r = bobbin::internal::intercept::real::close(fd);
  if (close_count != 0) {
    const int saved = errno;
    bobbin::internal::closed_fds::after_close(fd, close_count);
    errno = saved;
  }
  return r;
}
