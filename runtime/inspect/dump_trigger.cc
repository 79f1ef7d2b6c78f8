#include "runtime/inspect/dump_trigger.h"

#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "runtime/inspect/fiber_dump.h"
#include "runtime/util/check.h"
#include "runtime/util/mutex_lock.h"

namespace bobbin::internal {

// Every live runtime, for signal dumps and for debuggers: scripts/gdb/bobbin.py
// finds the fibers of a process or core file from here, so the name and the
// type are part of that script's contract.
absl::Mutex g_live_runtimes_mu(absl::kConstInit);
std::vector<runtime_impl*>* g_live_runtimes ABSL_GUARDED_BY(g_live_runtimes_mu) = nullptr;

namespace {

struct dump_settings {
  int signal = 0;  // 0: no signal
  std::string file;  // empty: stderr
  dump_format format = dump_format::text;
  bool at_exit = false;
};

int parse_signal(std::string name) {
  int number = 0;
  if (absl::SimpleAtoi(name, &number)) return number > 0 && number < NSIG ? number : 0;
  name = absl::AsciiStrToUpper(name);
  if (name.rfind("SIG", 0) == 0) name = name.substr(3);
  static const std::pair<const char*, int> kNames[] = {
      {"QUIT", SIGQUIT}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"HUP", SIGHUP}, {"INT", SIGINT}, {"TERM", SIGTERM},
      {"PWR", SIGPWR},   {"WINCH", SIGWINCH}};
  for (auto [n, s] : kNames) {
    if (name == n) return s;
  }
  return 0;
}

const dump_settings& settings() {
  static const dump_settings s = [] {
    dump_settings s;
    if (const char* v = std::getenv("BOBBIN_DUMP_SIGNAL"); v != nullptr && *v != '\0') {
      s.signal = parse_signal(v);
      if (s.signal == 0) write_stderr(absl::StrCat("bobbin: BOBBIN_DUMP_SIGNAL=", v, " is not a signal; ignored\n"));
    }
    if (const char* v = std::getenv("BOBBIN_DUMP_FILE")) s.file = v;
    if (const char* v = std::getenv("BOBBIN_DUMP_FORMAT"); v != nullptr && std::strcmp(v, "json") == 0) {
      s.format = dump_format::json;
    }
    if (const char* v = std::getenv("BOBBIN_DUMP_AT_EXIT")) s.at_exit = std::strcmp(v, "1") == 0;
    return s;
  }();
  return s;
}

sem_t g_dump_requests;

void write_dump(const std::string& text) {
  const dump_settings& s = settings();
  int fd = 2;
  if (!s.file.empty()) {
    fd = ::open(s.file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
      write_stderr(absl::StrCat("bobbin: cannot open BOBBIN_DUMP_FILE ", s.file, ": ", std::strerror(errno),
                                "; dumping to stderr\n"));
      fd = 2;
    }
  }
  std::size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
  if (fd != 2) ::close(fd);
}

void on_dump_signal(int) {
  int saved = errno;
  ::sem_post(&g_dump_requests);
  errno = saved;
}

// Waits for the signal and dumps every live runtime; runs for the life of
// the process (a detached thread that sleeps in sem_wait).
void dump_thread_main() {
  pthread_setname_np(pthread_self(), "bobbin-dump");
  for (;;) {
    if (::sem_wait(&g_dump_requests) != 0) continue;  // EINTR
    mutex_lock lock(&g_live_runtimes_mu);
    for (runtime_impl* rt : *g_live_runtimes) write_dump(dump_runtime(*rt, settings().format));
  }
}

void install_signal_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    ::sem_init(&g_dump_requests, 0, 0);
    std::thread(dump_thread_main).detach();
    struct sigaction sa {};
    sa.sa_handler = on_dump_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    ::sigaction(settings().signal, &sa, nullptr);
  });
}

}  // namespace

void runtime_started(runtime_impl* rt) {
  const dump_settings& s = settings();
  {
    mutex_lock lock(&g_live_runtimes_mu);
    if (g_live_runtimes == nullptr) g_live_runtimes = new std::vector<runtime_impl*>;
    g_live_runtimes->push_back(rt);
  }
  if (s.signal != 0) install_signal_once();
}

void runtime_stopping(runtime_impl* rt) {
  const dump_settings& s = settings();
  mutex_lock lock(&g_live_runtimes_mu);
  if (g_live_runtimes == nullptr) return;
  auto it = std::find(g_live_runtimes->begin(), g_live_runtimes->end(), rt);
  if (it == g_live_runtimes->end()) return;
  g_live_runtimes->erase(it);
  if (s.at_exit) write_dump(dump_runtime(*rt, s.format));
}

}  // namespace bobbin::internal
