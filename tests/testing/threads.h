// Shared by the tests: the threads of this process, as /proc lists them.
#ifndef BOBBIN_TESTS_TESTING_THREADS_H_
#define BOBBIN_TESTS_TESTING_THREADS_H_

#include <dirent.h>

#include <fstream>
#include <map>
#include <string>

namespace bobbin::testing {

// Every thread of this process: its id and its name (/proc/self/task/*/comm).
inline std::map<std::string, std::string> threads_by_tid() {
  std::map<std::string, std::string> out;
  DIR* d = ::opendir("/proc/self/task");
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream comm(std::string("/proc/self/task/") + e->d_name + "/comm");
    std::string name;
    std::getline(comm, name);
    out[e->d_name] = name;
  }
  ::closedir(d);
  return out;
}

}  // namespace bobbin::testing

#endif  // BOBBIN_TESTS_TESTING_THREADS_H_
