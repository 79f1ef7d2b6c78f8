// A process for tests/integration/gdb_test.py to attach gdb to: fibers parked
// in functions with known names, on a runtime of two carriers. Prints
// "ready" once they are parked; ends cleanly when stdin closes.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "bobbin/bobbin.h"

namespace {

__attribute__((noinline)) void wait_in_named_function(bobbin::channel<int>& ch) {
  (void)ch.receive();
  asm volatile("");
}

__attribute__((noinline)) void sleep_in_named_function(bobbin::channel<int>& stop) {
  int v;
  while (stop.receive(v, std::chrono::milliseconds(50)) == bobbin::channel_status::timeout) {
  }
  asm volatile("");
}

}  // namespace

int main() {
  auto rt = bobbin::runtime::start({.carriers = 2}).value();
  bobbin::channel<int> never(0), stop(0);
  std::vector<bobbin::fiber<>> fibers;
  for (int i = 0; i < 3; i++) {
    fibers.push_back(rt->spawn([&] { wait_in_named_function(never); }, {.name = "waiter-" + std::to_string(i)}));
  }
  fibers.push_back(rt->spawn([&] { sleep_in_named_function(stop); }, {.name = "napper"}));
  // Parked for sure once a dump says so.
  while (rt->dump(bobbin::dump_format::json).find("wait_in_named_function") == std::string::npos) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::printf("ready\n");
  std::fflush(stdout);
  std::string line;
  while (std::getline(std::cin, line)) {
  }
  never.close();
  stop.close();
  for (auto& f : fibers) f.join();
  return 0;
}
