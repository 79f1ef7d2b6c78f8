// Not part of the bobbin API.
//
// Which backend a runtime's reactors use (runtime_options::backend,
// BOBBIN_BACKEND), decided once per runtime start: io_uring where the kernel
// sets up a ring, else, when the caller left the choice to bobbin and the
// refusal is the system's (EPERM, ENOSYS, EINVAL: a seccomp filter, the
// sysctl, a kernel without io_uring or too old), epoll, with one line on
// stderr per process that gives the cause (setup_failure.h). A refusal
// that is a shortage (ENOMEM, EMFILE) fails the start instead: epoll would
// hide a problem the user should fix.
#ifndef BOBBIN_RUNTIME_IO_BACKEND_CHOICE_H_
#define BOBBIN_RUNTIME_IO_BACKEND_CHOICE_H_

#include "absl/status/statusor.h"
#include "bobbin/runtime.h"

namespace bobbin::internal {

// io_backend::io_uring or io_backend::epoll, or why neither may run.
absl::StatusOr<io_backend> choose_backend(io_backend requested);

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_IO_BACKEND_CHOICE_H_
