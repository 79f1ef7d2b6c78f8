// Not part of the bobbin API.
//
// Why the kernel refused to set up an io_uring ring, in words a user can act
// on. The same errno has several causes that need different fixes: EPERM
// comes from the kernel.io_uring_disabled sysctl (Linux 6.6+), from a
// seccomp filter (Docker's default profile since Docker 25, containerd
// 2.0's, so Kubernetes' RuntimeDefault) or from a security module; ENOSYS
// from a kernel built without io_uring, a sandbox that has none (gVisor) or
// a seccomp filter that answers ENOSYS (Podman's and CRI-O's profiles).
// Telling them apart needs what /proc says about this process and the
// machine, read once, after the failure (never on a successful start).
#ifndef BOBBIN_RUNTIME_IO_SETUP_FAILURE_H_
#define BOBBIN_RUNTIME_IO_SETUP_FAILURE_H_

#include <string>

#include "absl/status/status.h"

namespace bobbin::internal {

// What the explanation is made from. -1 where /proc does not say.
struct setup_environment {
  int disabled_sysctl = -1;      // /proc/sys/kernel/io_uring_disabled (0, 1, 2)
  long allowed_group = -1;       // /proc/sys/kernel/io_uring_group
  bool in_allowed_group = false; // the process's effective or supplementary gids hold it
  bool cap_sys_admin = false;    // CapEff in /proc/self/status
  int seccomp_mode = -1;         // Seccomp in /proc/self/status: 0 none, 1 strict, 2 filter
  std::string kernel_release;    // uname -r
};

// Reads the above for the calling process.
setup_environment observe_setup_environment();

// The status to return for io_uring_setup failing with `err` (a negative
// errno, after every fallback bobbin tries) in `env`: UNAVAILABLE when the
// system refuses io_uring (EPERM, ENOSYS, EINVAL), RESOURCE_EXHAUSTED when it
// ran out of something (ENOMEM, EMFILE, ENFILE), INTERNAL otherwise. The
// message starts "bobbin: io_uring is unavailable: " and names the cause and
// what to change.
absl::Status explain_setup_failure(int err, const setup_environment& env);

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_IO_SETUP_FAILURE_H_
