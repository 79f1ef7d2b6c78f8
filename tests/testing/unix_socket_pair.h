// A connected pair of AF_UNIX stream sockets (blocking), closed on scope
// exit: both ends of a byte stream for tests that make plain socket calls.
#ifndef BOBBIN_TESTS_TESTING_UNIX_SOCKET_PAIR_H_
#define BOBBIN_TESTS_TESTING_UNIX_SOCKET_PAIR_H_

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

namespace bobbin::testing {

struct unix_socket_pair {
  int a = -1, b = -1;
  unix_socket_pair() {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    a = sv[0];
    b = sv[1];
  }
  unix_socket_pair(const unix_socket_pair&) = delete;
  unix_socket_pair& operator=(const unix_socket_pair&) = delete;
  ~unix_socket_pair() {
    ::close(a);
    ::close(b);
  }
};

}  // namespace bobbin::testing

#endif  // BOBBIN_TESTS_TESTING_UNIX_SOCKET_PAIR_H_
