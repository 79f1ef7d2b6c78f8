#include "runtime/io/backend_choice.h"

#include <linux/io_uring.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "runtime/io/setup_failure.h"
#include "runtime/util/check.h"

namespace bobbin::internal {

namespace {

// Sets up (and closes) the smallest ring bobbin can run on: the last of
// ring::init's fallbacks. 0, or the negative errno.
int probe_io_uring() {
  io_uring_params p;
  std::memset(&p, 0, sizeof p);
  p.flags = IORING_SETUP_CQSIZE;
  p.cq_entries = 16;
  const long fd = syscall(__NR_io_uring_setup, 8, &p);
  if (fd < 0) return -errno;
  close(static_cast<int>(fd));
  return 0;
}

std::atomic<bool> fallback_reported{false};

}  // namespace

absl::StatusOr<io_backend> choose_backend(io_backend requested) {
  if (const char* env = std::getenv("BOBBIN_BACKEND"); env != nullptr && *env != '\0') {
    if (std::strcmp(env, "auto") == 0) {
      requested = io_backend::automatic;
    } else if (std::strcmp(env, "io_uring") == 0) {
      requested = io_backend::io_uring;
    } else if (std::strcmp(env, "epoll") == 0) {
      requested = io_backend::epoll;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("bobbin: BOBBIN_BACKEND must be auto, io_uring or epoll, not '", env, "'"));
    }
  }
  if (requested == io_backend::epoll) return io_backend::epoll;
  const int err = probe_io_uring();
  if (err == 0) return io_backend::io_uring;
  absl::Status why = explain_setup_failure(err, observe_setup_environment());
  if (requested == io_backend::io_uring || !absl::IsUnavailable(why)) return why;
  if (!fallback_reported.exchange(true, std::memory_order_relaxed)) {
    write_stderr(absl::StrCat(why.message(), "; running on epoll instead (BOBBIN_BACKEND=epoll says so without this "
                                             "message)\n"));
  }
  return io_backend::epoll;
}

}  // namespace bobbin::internal
