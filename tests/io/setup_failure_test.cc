// What runtime::start says when the kernel will not set up an io_uring ring
// (runtime/io/setup_failure.h): the cause, told apart from /proc, for each
// errno; and, under a real seccomp filter of the kind container runtimes
// install (Docker's answers EPERM, Podman's ENOSYS), the whole start.
#include "runtime/io/setup_failure.h"

#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "bobbin/bobbin.h"

namespace {

using bobbin::internal::explain_setup_failure;
using bobbin::internal::setup_environment;

setup_environment machine(int sysctl, int seccomp) {
  setup_environment env;
  env.disabled_sysctl = sysctl;
  env.seccomp_mode = seccomp;
  env.kernel_release = "6.18.0-test";
  return env;
}

TEST(SetupFailureTest, TheSysctlAtTwoIsNamed) {
  const absl::Status st = explain_setup_failure(-EPERM, machine(2, 0));
  EXPECT_TRUE(absl::IsUnavailable(st));
  EXPECT_NE(st.message().find("bobbin: io_uring is unavailable: "), std::string::npos) << st;
  EXPECT_NE(st.message().find("kernel.io_uring_disabled is 2"), std::string::npos) << st;
  EXPECT_EQ(st.message().find("seccomp"), std::string::npos) << st;
}

TEST(SetupFailureTest, TheSysctlAtOneNamesTheGroupThisProcessIsNotIn) {
  setup_environment env = machine(1, 0);
  env.allowed_group = 1234;
  const absl::Status st = explain_setup_failure(-EPERM, env);
  EXPECT_TRUE(absl::IsUnavailable(st));
  EXPECT_NE(st.message().find("kernel.io_uring_disabled is 1"), std::string::npos) << st;
  EXPECT_NE(st.message().find("gid 1234"), std::string::npos) << st;
}

TEST(SetupFailureTest, TheSysctlAtOneDoesNotRefuseAProcessItAllows) {
  // In the group, or privileged: the EPERM came from somewhere else.
  for (const bool in_group : {true, false}) {
    setup_environment env = machine(1, 2);
    env.allowed_group = 1234;
    env.in_allowed_group = in_group;
    env.cap_sys_admin = !in_group;
    const absl::Status st = explain_setup_failure(-EPERM, env);
    EXPECT_NE(st.message().find("by a seccomp filter or a security module, not by the sysctl"), std::string::npos)
        << st;
    EXPECT_NE(st.message().find("kernel.io_uring_disabled is 1 but this process may use io_uring"), std::string::npos)
        << st;
  }
}

TEST(SetupFailureTest, EpermWithTheSysctlOffIsAFilterAndSaysHowToAllowIt) {
  const absl::Status st = explain_setup_failure(-EPERM, machine(0, 2));
  EXPECT_TRUE(absl::IsUnavailable(st));
  EXPECT_NE(st.message().find("kernel.io_uring_disabled is 0"), std::string::npos) << st;
  EXPECT_NE(st.message().find("Seccomp: 2"), std::string::npos) << st;
  EXPECT_NE(st.message().find("Docker 25"), std::string::npos) << st;
  EXPECT_NE(st.message().find("io_uring_setup, io_uring_enter and io_uring_register"), std::string::npos) << st;
  // A kernel older than the sysctl (6.6).
  const absl::Status old = explain_setup_failure(-EPERM, machine(-1, 0));
  EXPECT_NE(old.message().find("this kernel has no kernel.io_uring_disabled sysctl"), std::string::npos) << old;
  EXPECT_NE(old.message().find("Seccomp: 0"), std::string::npos) << old;
}

TEST(SetupFailureTest, EnosysNamesTheFilterWhenThereIsOneAndTheKernelOtherwise) {
  const absl::Status filtered = explain_setup_failure(-ENOSYS, machine(0, 2));
  EXPECT_TRUE(absl::IsUnavailable(filtered));
  EXPECT_NE(filtered.message().find("Podman"), std::string::npos) << filtered;
  const absl::Status bare = explain_setup_failure(-ENOSYS, machine(-1, 0));
  EXPECT_EQ(bare.message().find("Podman"), std::string::npos) << bare;
  EXPECT_NE(bare.message().find("this kernel (6.18.0-test) built without CONFIG_IO_URING"), std::string::npos) << bare;
  EXPECT_NE(bare.message().find("gVisor"), std::string::npos) << bare;
}

TEST(SetupFailureTest, OtherErrorsSayWhatRanOut) {
  const absl::Status inval = explain_setup_failure(-EINVAL, machine(0, 0));
  EXPECT_TRUE(absl::IsUnavailable(inval));
  EXPECT_NE(inval.message().find("6.18.0-test"), std::string::npos) << inval;
  EXPECT_NE(inval.message().find("Linux 5.19"), std::string::npos) << inval;
  const absl::Status nomem = explain_setup_failure(-ENOMEM, machine(0, 0));
  EXPECT_TRUE(absl::IsResourceExhausted(nomem));
  EXPECT_NE(nomem.message().find("RLIMIT_MEMLOCK"), std::string::npos) << nomem;
  const absl::Status mfile = explain_setup_failure(-EMFILE, machine(0, 0));
  EXPECT_TRUE(absl::IsResourceExhausted(mfile));
  const absl::Status io = explain_setup_failure(-EIO, machine(0, 0));
  EXPECT_TRUE(absl::IsInternal(io));
  EXPECT_NE(io.message().find("(errno 5)"), std::string::npos) << io;
}

// What container runtimes install: io_uring_setup, io_uring_enter and
// io_uring_register (425-427 on every architecture: they came after the
// numbers were unified) answer `err`; everything else is allowed.
void refuse_io_uring(int err) {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, __NR_io_uring_setup, 0, 2),
      BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, __NR_io_uring_register, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (static_cast<unsigned>(err) & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
      syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) != 0) {
    std::perror("seccomp");
    std::_Exit(1);
  }
}

// Starts a runtime that must run on io_uring under the filter; prints what
// start said and exits 3 if it refused (0 if it started).
[[noreturn]] void start_under_filter(int err) {
  refuse_io_uring(err);
  bobbin::runtime_options o;
  o.carriers = 2;
  o.backend = bobbin::io_backend::io_uring;
  auto rt = bobbin::runtime::start(o);
  if (rt.ok()) std::exit(0);
  std::fprintf(stderr, "%s\n", std::string(rt.status().message()).c_str());
  std::exit(3);
}

// Under the filter with the backend left to bobbin: the runtime starts on
// epoll, and 100 fibers echo through a listener on 127.0.0.1 on it. Exits
// 0 when every byte came back, 4 otherwise.
[[noreturn]] void echo_under_filter(int err) {
  refuse_io_uring(err);
  auto rt = bobbin::runtime::start({.carriers = 2});
  if (!rt.ok()) {
    std::fprintf(stderr, "start: %s\n", std::string(rt.status().message()).c_str());
    std::exit(4);
  }
  bool good = (*rt)->stats().backend == bobbin::io_backend::epoll;
  auto listener = bobbin::tcp_listener::bind(bobbin::socket_address::loopback(0));
  if (!listener.ok()) std::exit(4);
  std::atomic<int> echoed{0};
  (*rt)->spawn([&] {
    bobbin::scope servers;
    std::vector<bobbin::fiber<void>> clients;
    for (int i = 0; i < 100; i++) {
      clients.push_back(bobbin::spawn([&, i] {
        auto s = bobbin::tcp_stream::connect(listener->local_address()).value();
        const std::string msg = "hello " + std::to_string(i);
        s.write_all(msg).value();
        std::string back(msg.size(), '\0');
        if (s.read_exact(std::span<char>(back)).bytes == msg.size() && back == msg) echoed++;
      }));
      auto conn = listener->accept().value();
      servers.spawn([c = std::move(conn)]() mutable {
        char buf[64];
        for (;;) {
          auto r = c.read_some(std::span<char>(buf));
          if (r.bytes == 0) return;
          c.write_all(std::string_view(buf, r.bytes)).value();
        }
      });
    }
    for (auto& c : clients) c.join();
    servers.cancel();
    servers.join();
  }).join();
  good = good && echoed.load() == 100;
  std::fprintf(stderr, "echoed %d of 100 on %s\n", echoed.load(), bobbin::to_string((*rt)->stats().backend));
  std::exit(good ? 0 : 4);
}

TEST(SetupFailureTest, UnderDockersFilterTheRuntimeRunsOnEpollAndSaysWhy) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(echo_under_filter(EPERM), testing::ExitedWithCode(0),
              "bobbin: io_uring is unavailable: io_uring_setup was refused with EPERM by a seccomp filter.*"
              "; running on epoll instead.*\n.*echoed 100 of 100 on epoll");
}

TEST(SetupFailureTest, UnderPodmansFilterTheRuntimeRunsOnEpollAndSaysWhy) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(echo_under_filter(ENOSYS), testing::ExitedWithCode(0),
              "\\(ENOSYS\\).*; running on epoll instead.*\n.*echoed 100 of 100 on epoll");
}

TEST(SetupFailureTest, DockersSeccompRefusalIsToldFromTheSysctl) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(start_under_filter(EPERM), testing::ExitedWithCode(3),
              "bobbin: io_uring is unavailable: io_uring_setup was refused with EPERM by a seccomp filter or a "
              "security module, not by the sysctl \\(kernel.io_uring_disabled is 0; this process runs under a "
              "seccomp filter \\(Seccomp: 2 in /proc/self/status\\)\\)");
}

TEST(SetupFailureTest, PodmansEnosysRefusalNamesTheFilter) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(start_under_filter(ENOSYS), testing::ExitedWithCode(3),
              "io_uring system calls do not exist here \\(ENOSYS\\); the cause is a seccomp filter answering ENOSYS");
}

}  // namespace
