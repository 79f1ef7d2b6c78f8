// Not part of the bobbin API.
//
// Dumps asked for from outside the program, by environment variables read
// when a runtime starts (documented at runtime::dump in bobbin/runtime.h):
// BOBBIN_DUMP_SIGNAL, BOBBIN_DUMP_FILE, BOBBIN_DUMP_FORMAT, BOBBIN_DUMP_AT_EXIT.
//
// The signal handler only posts a semaphore (async-signal-safe); a thread of
// its own, started with the first runtime that asks for it, takes the dumps
// of every live runtime, so the process keeps serving meanwhile.
//
// Every runtime registers here while it runs, asked or not: the registry
// (g_live_runtimes, dump_trigger.cc) is also where scripts/gdb/bobbin.py
// finds the fibers of a process or a core file.
#ifndef BOBBIN_RUNTIME_INSPECT_DUMP_TRIGGER_H_
#define BOBBIN_RUNTIME_INSPECT_DUMP_TRIGGER_H_

namespace bobbin::internal {

class runtime_impl;

void runtime_started(runtime_impl* rt);       // after its carriers run
void runtime_stopping(runtime_impl* rt);      // before its carriers stop

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_INSPECT_DUMP_TRIGGER_H_
