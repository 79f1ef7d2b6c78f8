// Fiber dumps (runtime::dump): stacks of parked fibers taken from their
// saved contexts, grouped text, JSON checked by a real parser (Python's),
// dumps taken while fibers switch on two carriers, and the environment
// triggers (signal, at exit) when run with them set.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bobbin/bobbin.h"
#include "tests/testing/runtime_fixture.h"

namespace {

using namespace std::chrono_literals;

// Named, not inlined, so the stacks must show them.
__attribute__((noinline)) void wait_for_work_item(bobbin::channel<int>& ch) {
  (void)ch.receive();
  asm volatile("");  // not a tail call: this frame stays on the stack
}
__attribute__((noinline)) void nap_in_named_function() {
  bobbin::this_fiber::sleep_for(500ms);
  asm volatile("");
}

int count_of(const std::string& text, const std::string& what) {
  int n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) n++;
  return n;
}

// Runs Python's json parser over `json` with `check` (Python code that sees
// `d`, the parsed dump, and `expect`, the integer passed); returns what it
// printed, "ok" if every assert held.
std::string check_with_python(const std::string& json, const std::string& check, long expect) {
  char path[] = "/tmp/bobbin_dump_XXXXXX";
  int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(write(fd, json.data(), json.size()), static_cast<ssize_t>(json.size()));
  close(fd);
  std::string script = "import json,sys\nd=json.loads(open(sys.argv[1]).readline())\nexpect=int(sys.argv[2])\n" + check +
                       "\nprint('ok')\n";
  char spath[] = "/tmp/bobbin_dump_check_XXXXXX";
  int sfd = mkstemp(spath);
  EXPECT_EQ(write(sfd, script.data(), script.size()), static_cast<ssize_t>(script.size()));
  close(sfd);
  std::string cmd = std::string("python3 ") + spath + " " + path + " " + std::to_string(expect) + " 2>&1";
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[4096];
    while (std::size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    pclose(p);
  }
  unlink(path);
  unlink(spath);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

TEST(DumpTest, TenThousandParkedFibersGroupedWithTheirStacks) {
  const int kParked = bobbin::testing::max_live_fibers(10000);
  auto rt = bobbin::runtime::start({.carriers = 2}).value();
  bobbin::channel<int> work(0);
  bobbin::latch parked(kParked + 1);
  std::vector<bobbin::fiber<>> fs;
  for (int i = 0; i < kParked; i++) {
    fs.push_back(rt->spawn([&] {
      parked.count_down();
      wait_for_work_item(work);
    }, {.name = "worker"}));
  }
  fs.push_back(rt->spawn([&] {
    parked.count_down();
    nap_in_named_function();
  }, {.name = "napper"}));
  parked.wait();
  std::this_thread::sleep_for(20ms);  // the last ones get from count_down to their park

  const auto t0 = std::chrono::steady_clock::now();
  const std::string text = rt->dump();
  const auto took = std::chrono::steady_clock::now() - t0;
  std::printf("text dump of %d fibers: %zu bytes in %.1f ms\n", kParked + 1, text.size(),
              std::chrono::duration<double, std::milli>(took).count());
  // One group for the workers, with their count, printed once.
  EXPECT_NE(text.find(std::to_string(kParked) + " fibers parked on channel receive"), std::string::npos) << text.substr(0, 2000);
  EXPECT_EQ(count_of(text, "wait_for_work_item"), 1) << text.substr(0, 2000);
  EXPECT_NE(text.find("1 fiber parked on sleep"), std::string::npos);
  EXPECT_NE(text.find("nap_in_named_function"), std::string::npos);
  EXPECT_NE(text.find("spawned at " __FILE__), std::string::npos);

  const std::string json = rt->dump(bobbin::dump_format::json);
  EXPECT_EQ(check_with_python(json, R"(
fibers = d['fibers']
assert len(fibers) == expect + 1, len(fibers)
assert len({f['id'] for f in fibers}) == len(fibers)
workers = [f for f in fibers if f['name'] == 'worker']
assert len(workers) == expect, len(workers)
for f in workers:
    assert f['state'] == 'parked' and f['wait_reason'] == 'channel receive', f
    names = [fr['function'] for fr in f['stack']]
    assert names, f
    assert any('wait_for_work_item' in n for n in names), names
    assert any('bobbin::internal::park' in n for n in names), names
    assert 'fiber_entry' in names[-1], names
    assert f['carrier'] in (0, 1) and f['spawned_at']['line'] > 0, f
napper = [f for f in fibers if f['name'] == 'napper'][0]
assert napper['wait_reason'] == 'sleep'
assert any('nap_in_named_function' in fr['function'] for fr in napper['stack'])
)", kParked), "ok");

  work.close();
  for (auto& f : fs) f.join();
}

// Dumps taken over and over while fibers yield, pass messages and sleep on
// two carriers: every switched-out fiber's stack must unwind to its base
// (fiber_entry), which a stack read in the middle of a switch would not.
TEST(DumpTest, DumpsWhileFibersSwitchOnTwoCarriers) {
  auto rt = bobbin::runtime::start({.carriers = 2}).value();
  std::atomic<bool> stop{false};
  std::vector<bobbin::fiber<>> fs;
  bobbin::channel<int> ch(4);
  for (int i = 0; i < 32; i++) {
    fs.push_back(rt->spawn([&, i] {
      while (!stop.load()) {
        if (i % 4 == 0) (void)ch.send(i, 50ms);
        else if (i % 4 == 1) { int v; (void)ch.receive(v, 50ms); }
        else if (i % 4 == 2) bobbin::this_fiber::yield();
        else bobbin::this_fiber::sleep_for(100us);
      }
    }));
  }
  int dumps = 0, walked = 0, bad = 0;
  std::string bad_example;
  const auto end = std::chrono::steady_clock::now() + (bobbin::testing::kUnderSanitizer ? 3s : 2s);
  while (std::chrono::steady_clock::now() < end) {
    const std::string json = rt->dump(bobbin::dump_format::json);
    dumps++;
    std::this_thread::sleep_for(1ms);  // room for the dumping fiber: dumps are one at a time
    // Each fiber object: a stack either empty (running or switching) or
    // ending in fiber_entry.
    for (std::size_t at = json.find("\"stack\":["); at != std::string::npos; at = json.find("\"stack\":[", at + 1)) {
      const std::size_t close = json.find("]}", at);
      const std::string stack = json.substr(at, close - at);
      if (stack == "\"stack\":[") continue;
      walked++;
      const std::size_t last = stack.rfind("\"function\":");
      if (stack.find("fiber_entry", last) == std::string::npos) {
        bad++;
        bad_example = stack;
      }
    }
  }
  stop = true;
  ch.close();
  for (auto& f : fs) f.join();
  std::printf("%d dumps, %d stacks walked\n", dumps, walked);
  EXPECT_GT(dumps, 10);
  EXPECT_GT(walked, 100);
  EXPECT_EQ(bad, 0) << bad_example;
}

// A fiber may take the dump itself: it lists its own stack, taken in place.
__attribute__((noinline)) std::string dump_from_named_function(bobbin::runtime& rt) {
  std::string d = rt.dump(bobbin::dump_format::json);
  asm volatile("");
  return d;
}

TEST(DumpTest, AFiberTakingADumpListsItsOwnStack) {
  auto rt = bobbin::runtime::start({.carriers = 2}).value();
  bobbin::channel<int> never(0);
  auto parked = rt->spawn([&] { wait_for_work_item(never); });
  std::this_thread::sleep_for(20ms);
  auto dumper = rt->spawn([&] {
    const std::string me = "{\"id\":" + std::to_string(bobbin::this_fiber::id()) + ",";
    const std::string d = dump_from_named_function(*rt);
    const std::size_t at = d.find(me);
    EXPECT_NE(at, std::string::npos) << d;
    const std::string mine = d.substr(at, d.find("]}", at) - at);
    EXPECT_NE(mine.find("dump_from_named_function"), std::string::npos) << mine;
    EXPECT_NE(d.find("wait_for_work_item"), std::string::npos) << d;
  });
  dumper.join();
  never.close();
  parked.join();
}

// A fiber asked to stop but still parked (here in mutex::lock, which is not
// interrupted) is marked in both forms, so a dump shows who ignores it.
TEST(DumpTest, ACancelledFiberIsMarked) {
  auto rt = bobbin::runtime::start({.carriers = 2}).value();
  bobbin::mutex mu;
  std::unique_lock held(mu);
  auto stuck = rt->spawn([&] { std::lock_guard g(mu); }, {.name = "ignores-the-stop"});
  std::this_thread::sleep_for(20ms);
  stuck.request_stop();
  const std::string json = rt->dump(bobbin::dump_format::json);
  const std::string text = rt->dump(bobbin::dump_format::text);
  EXPECT_NE(json.find(R"("name":"ignores-the-stop","state":"parked","wait_reason":"mutex lock")"), std::string::npos)
      << json;
  EXPECT_NE(json.find(R"("cancelled":true)"), std::string::npos) << json;
  EXPECT_NE(text.find("\"ignores-the-stop\" (cancelled)"), std::string::npos) << text;
  held.unlock();
  stuck.join();
}

__attribute__((noinline)) void spin_on_the_cpu(const std::atomic<bool>& stop) {
  while (!stop.load(std::memory_order_relaxed)) asm volatile("pause");
}

// Fibers on a CPU: the dump asks each one's carrier, by signal, for the stack
// it runs on; a carrier blocked in a system call is named instead (a signal
// could cut the call short).
TEST(DumpTest, RunningFibersShowTheStackTheirCarrierScans) {
  bobbin::runtime_options o;
  o.carriers = 2;
  o.pin_threshold = 0ms;  // both carriers are held on purpose
  auto rt = bobbin::runtime::start(o).value();
  std::atomic<bool> stop{false};
  std::atomic<int> started{0};
  auto spinner = rt->spawn([&] {
    started++;
    spin_on_the_cpu(stop);
  });
  auto sleeper = rt->spawn([&] {
    bobbin::pinned_scope pin("test: a blocking call");
    started++;
    while (!stop.load()) ::usleep(2000);  // pinned: the real system call
  });
  while (started.load() < 2) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(20ms);
  std::string d;
  // The sleeper is almost always in the kernel; the spinner always on a CPU.
  for (int attempt = 0; attempt < 20; attempt++) {
    d = rt->dump(bobbin::dump_format::json);
    if (d.find("blocked in the kernel in") != std::string::npos && d.find("spin_on_the_cpu") != std::string::npos) break;
  }
  stop = true;
  spinner.join();
  sleeper.join();
  EXPECT_EQ(check_with_python(d, R"(
spinner = [f for f in d['fibers'] if any('spin_on_the_cpu' in fr['function'] for fr in f['stack'])]
assert len(spinner) == 1, d
assert spinner[0]['state'] == 'running' and spinner[0].get('stack_scanned') is True, spinner
sleeper = [f for f in d['fibers'] if f['id'] != spinner[0]['id']]
assert len(sleeper) == 1 and sleeper[0]['state'] == 'running', sleeper
assert 'blocked in the kernel in' in sleeper[0]['no_stack'], sleeper
)",
                              0),
            "ok");
  const std::string text = rt->dump(bobbin::dump_format::text);
  EXPECT_EQ(text.find("scanned"), std::string::npos) << "nothing runs any more\n" << text;
}

}  // namespace
