#include "runtime/io/setup_failure.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace bobbin::internal {

namespace {

constexpr char kPrefix[] = "bobbin: io_uring is unavailable: ";

// A whole number from a one-line /proc file; -1 if it cannot be read.
long read_number(const char* path) {
  std::ifstream in(path);
  long v = -1;
  if (!(in >> v)) return -1;
  return v;
}

// Bit `bit` of the hexadecimal mask after "CapEff:" in /proc/self/status.
bool capability_bit(const std::string& hex_mask, int bit) {
  const unsigned long long mask = std::strtoull(hex_mask.c_str(), nullptr, 16);
  return ((mask >> bit) & 1ULL) != 0;
}

std::string kernel_words(const setup_environment& env) {
  return env.kernel_release.empty() ? std::string("this kernel") : absl::StrCat("this kernel (", env.kernel_release, ")");
}

// What a seccomp filter on this process adds to an EPERM or ENOSYS.
std::string seccomp_words(const setup_environment& env) {
  if (env.seccomp_mode == 2) return "this process runs under a seccomp filter (Seccomp: 2 in /proc/self/status)";
  if (env.seccomp_mode == 0) return "this process has no seccomp filter (Seccomp: 0 in /proc/self/status)";
  return "";
}

}  // namespace

setup_environment observe_setup_environment() {
  setup_environment env;
  env.disabled_sysctl = static_cast<int>(read_number("/proc/sys/kernel/io_uring_disabled"));
  env.allowed_group = read_number("/proc/sys/kernel/io_uring_group");
  if (env.allowed_group >= 0) {
    const auto gid = static_cast<gid_t>(env.allowed_group);
    env.in_allowed_group = getegid() == gid;
    const int n = getgroups(0, nullptr);
    if (n > 0) {
      std::vector<gid_t> groups(static_cast<size_t>(n));
      const int got = getgroups(n, groups.data());
      for (int i = 0; i < got; i++) env.in_allowed_group |= groups[static_cast<size_t>(i)] == gid;
    }
  }
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    if (key == "Seccomp:") {
      status >> env.seccomp_mode;
    } else if (key == "CapEff:") {
      std::string mask;
      status >> mask;
      env.cap_sys_admin = capability_bit(mask, 21);  // CAP_SYS_ADMIN
    }
    status.ignore(1 << 20, '\n');
  }
  utsname u;
  if (uname(&u) == 0) env.kernel_release = u.release;
  return env;
}

absl::Status explain_setup_failure(int err, const setup_environment& env) {
  switch (-err) {
    case EPERM: {
      if (env.disabled_sysctl == 2) {
        return absl::UnavailableError(absl::StrCat(
            kPrefix, "the sysctl kernel.io_uring_disabled is 2, which turns io_uring off for every process on this "
                     "machine (an administrator can set it to 0, or to 1 with kernel.io_uring_group naming a group "
                     "this program runs in)"));
      }
      if (env.disabled_sysctl == 1 && !env.in_allowed_group && !env.cap_sys_admin) {
        const std::string group =
            env.allowed_group < 0
                ? std::string("and kernel.io_uring_group names no group; this process lacks CAP_SYS_ADMIN (set "
                              "the sysctl to 0, or name a group this program runs in)")
                : absl::StrCat("or in the group kernel.io_uring_group names (gid ", env.allowed_group,
                               "), and this process is neither (run it in that group, or set the sysctl to 0)");
        return absl::UnavailableError(absl::StrCat(kPrefix,
                                                   "the sysctl kernel.io_uring_disabled is 1, which allows io_uring "
                                                   "only to processes with CAP_SYS_ADMIN ",
                                                   group));
      }
      std::string sysctl_words =
          env.disabled_sysctl < 0 ? std::string("this kernel has no kernel.io_uring_disabled sysctl")
          : env.disabled_sysctl == 0
              ? std::string("kernel.io_uring_disabled is 0")
              : absl::StrCat("kernel.io_uring_disabled is ", env.disabled_sysctl, " but this process may use io_uring");
      const std::string filter = seccomp_words(env);
      return absl::UnavailableError(absl::StrCat(
          kPrefix, "io_uring_setup was refused with EPERM by a seccomp filter or a security module, not by the sysctl (",
          sysctl_words, filter.empty() ? "" : "; ", filter,
          "). Container runtimes refuse io_uring this way by default: Docker 25 and later, containerd 2.0 "
          "(Kubernetes' RuntimeDefault). Allow io_uring_setup, io_uring_enter and io_uring_register in the "
          "container's seccomp profile"));
    }
    case ENOSYS: {
      const std::string filter = env.seccomp_mode == 2
                                     ? std::string("a seccomp filter answering ENOSYS (this process runs under one: "
                                                   "Seccomp: 2 in /proc/self/status; Podman's and CRI-O's default "
                                                   "profiles refuse io_uring this way), ")
                                     : std::string();
      return absl::UnavailableError(absl::StrCat(
          kPrefix, "the io_uring system calls do not exist here (ENOSYS); the cause is ", filter, kernel_words(env),
          " built without CONFIG_IO_URING, or a sandbox without io_uring (gVisor)"));
    }
    case EINVAL:
      return absl::UnavailableError(absl::StrCat(kPrefix, kernel_words(env),
                                                 " rejected every ring set-up bobbin tries (EINVAL); bobbin needs "
                                                 "Linux 5.19 or later"));
    case ENOMEM:
      return absl::ResourceExhaustedError(
          absl::StrCat(kPrefix, "the kernel could not allocate the ring (ENOMEM); before Linux 5.12 rings count "
                                "against RLIMIT_MEMLOCK (ulimit -l)"));
    case EMFILE:
    case ENFILE:
      return absl::ResourceExhaustedError(absl::StrCat(
          kPrefix, "no file descriptor left for the ring (", std::strerror(-err), "; ulimit -n, or fs.file-max)"));
    default:
      return absl::InternalError(
          absl::StrCat(kPrefix, "io_uring_setup failed: ", std::strerror(-err), " (errno ", -err, ")"));
  }
}

}  // namespace bobbin::internal
