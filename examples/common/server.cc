#include <algorithm>
#include "examples/common/server.h"

#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>

#include <cstdio>
#include <mutex>
#include <string>
#include <system_error>

namespace examples {

using namespace std::chrono_literals;

void raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

long peak_rss_kib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

connection_registry::guard::guard(connection_registry& r, connection& c) : r_(r), c_(c) {
  std::lock_guard l(r_.mu_);
  r_.live_.insert(&c_);
}

connection_registry::guard::~guard() {
  {
    std::lock_guard l(r_.mu_);
    r_.live_.erase(&c_);
  }
  r_.fibers_.done();
}

bool connection_registry::enter_idle(connection& c) {
  c.idle.store(true);
  return !stopping_.load();
}

bobbin::io_result input_buffer::read_from(bobbin::tcp_stream& s, bobbin::deadline d, size_t chunk) {
  // The read lands in a scratch array on the fiber's stack, and only what
  // arrived is appended. Reading into buf_ made every connection hold a
  // zero-filled read window (16 KiB, 32 KiB once a request was split across
  // reads, by std::string's doubling), and the heap crept up for minutes
  // under churn (scripts/soak: http_server +15% RSS over 10 minutes at
  // 10,000 connections). Uninitialized, the array costs only the stack
  // pages the kernel writes into, and the copy is no more than the memset
  // the old resize did.
  char scratch[kMaxChunk];
  chunk = std::min(chunk, sizeof scratch);
  bobbin::io_result r = s.read_some(std::span(scratch, chunk), d);
  buf_.erase(0, start_);
  start_ = 0;
  // A large request (a 1 MiB body) leaves a large buffer: let it go once
  // everything in it is consumed, rather than for the connection's life.
  if (buf_.empty() && buf_.capacity() > 4 * kMaxChunk) std::string().swap(buf_);
  buf_.append(scratch, r.bytes);
  return r;
}

bool flush(bobbin::tcp_stream& s, std::string& out, bobbin::deadline d) {
  if (out.empty()) return true;
  bobbin::io_result r = s.write_all(out, d);
  out.clear();
  return static_cast<bool>(r);
}

bool flush_unless_stalled(bobbin::tcp_stream& s, std::string& out, std::chrono::milliseconds stall) {
  std::string_view rest = out;
  bool ok = true;
  while (!rest.empty()) {
    bobbin::io_result r = s.write_all(rest, stall.count() == 0 ? bobbin::deadline() : bobbin::deadline(stall));
    rest.remove_prefix(r.bytes);
    if (r) break;
    if (r.error != std::errc::timed_out || r.bytes == 0) {
      ok = false;
      break;
    }
  }
  out.clear();
  return ok;
}

bobbin::io_result connection_registry::read_more(connection& c, input_buffer& in, bobbin::deadline idle_deadline,
                                                 bobbin::deadline busy_deadline) {
  if (!in.empty()) return in.read_from(c.stream, busy_deadline);
  if (!enter_idle(c)) return {};  // stopping: end of stream between requests
  bobbin::io_result r = in.read_from(c.stream, idle_deadline);
  leave_idle(c);
  return r;
}

bool connection_registry::stop_and_drain(std::chrono::milliseconds drain, bobbin::scope* fibers) {
  mark_stopping();
  {
    std::lock_guard l(mu_);
    for (connection* c : live_) {
      if (c->idle.load()) (void)c->stream.shutdown(bobbin::tcp_stream::shutdown_how::both);
    }
  }
  if (fibers_.wait_for(drain)) return true;
  if (fibers != nullptr) {
    fibers->cancel();
  } else {
    std::lock_guard l(mu_);
    for (connection* c : live_) (void)c->stream.shutdown(bobbin::tcp_stream::shutdown_how::both);
  }
  fibers_.wait();
  return false;
}

void connection_registry::accept_loop(bobbin::tcp_listener& listener, const char* server_name,
                                      const std::function<void(bobbin::tcp_stream)>& serve, bobbin::scope& fibers) {
  bool warned_emfile = false;
  while (!stopping()) {
    auto s = listener.accept();
    if (!s) {
      std::error_code e = s.error();
      if (stopping()) break;  // stop_accepting() failed the accept (EINVAL)
      if (e == std::errc::too_many_files_open || e == std::errc::too_many_files_open_in_system) {
        if (!warned_emfile) std::fprintf(stderr, "%s: accept: %s; backing off\n", server_name, e.message().c_str());
        warned_emfile = true;
        bobbin::this_fiber::sleep_for(10ms);
        continue;
      }
      if (e != std::errc::connection_aborted) std::fprintf(stderr, "%s: accept: %s\n", server_name, e.message().c_str());
      continue;
    }
    accepted_.fetch_add(1, std::memory_order_relaxed);
    fibers_.add(1);
    try {
      fibers.spawn([&serve, server_name, stream = std::move(*s)]() mutable {
        try {
          serve(std::move(stream));
        } catch (const std::exception& e) {
          std::fprintf(stderr, "%s: connection failed: %s\n", server_name, e.what());
        }
      });
    } catch (const std::system_error&) {
      // No stack: the lambda and the socket in it are gone, so the client
      // sees the connection close. The server goes on.
      fibers_.done();
      refused_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  mark_stopping();
  listener.close();
}

signal_thread::signal_thread(std::function<void()> on_stop) {
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGUSR2);  // request_stop()
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  thread_ = std::thread([sigs, on_stop = std::move(on_stop)] {
    int sig = 0;
    sigwait(&sigs, &sig);
    on_stop();
  });
}

void signal_thread::request_stop() { pthread_kill(thread_.native_handle(), SIGUSR2); }

signal_thread::~signal_thread() {
  if (thread_.joinable()) thread_.join();
}

stats_printer::stats_printer(bobbin::runtime& rt, std::function<std::string()> extra)
    : thread_([this, &rt, extra = std::move(extra)] {
        while (!done_.load()) {
          for (int i = 0; i < 10 && !done_.load(); i++) std::this_thread::sleep_for(std::chrono::milliseconds(100));
          const bobbin::runtime_stats s = rt.stats();
          std::fprintf(stderr, "stats: carriers=%u backend=%s fibers_alive=%llu stacks_mapped=%llu rss_peak_kib=%ld %s\n",
                       s.carriers, bobbin::to_string(s.backend), static_cast<unsigned long long>(s.fibers_alive),
                       static_cast<unsigned long long>(s.stacks_mapped), peak_rss_kib(), extra().c_str());
        }
      }) {}

stats_printer::~stats_printer() {
  done_ = true;
  thread_.join();
}

}  // namespace examples
