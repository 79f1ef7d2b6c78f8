"""bobbin fibers in gdb: list them, and see a parked fiber's stack.

Load it into a gdb attached to a bobbin process (gdb -p PID) or opened on a
core file (gdb PROGRAM CORE):

    (gdb) source scripts/gdb/bobbin.py
    (gdb) bobbin fibers             # every fiber of every live runtime
    (gdb) bobbin bt 12              # the backtrace of fiber 12
    (gdb) bobbin switch 12          # make gdb's current frame fiber 12's
    (gdb) frame 3                   # ... look around: up, down, info locals
    (gdb) bobbin restore            # back to the thread's own registers

How: bobbin keeps its live runtimes in bobbin::internal::g_live_runtimes and
each runtime's fibers in a registry (runtime_impl::registry_). A fiber that
is not running has its registers saved by Boost.Context in a 0x40-byte
block at the top of what it used of its stack (fiber_control::ctx.fctx):
the x87/SSE control words, r12, r13, r14, r15, rbx, rbp, then the address
its switch returns to; its stack pointer is just above the block. `bobbin
switch` loads those into the selected thread's registers, where gdb's own
unwinder takes over; `bobbin restore` puts the thread's back. Never
continue the process while switched: `bobbin switch` refuses to be left
switched across a resume (it restores first). A running fiber's registers
are its carrier thread's: use `thread N` and `bt` for it.

Needs the library's debug information (meson's default debugoptimized
build has it). x86-64 only, as bobbin is. Core files: use one the kernel
writes (ulimit -c unlimited, then a crash or kill -ABRT); gdb's own gcore
loses fiber stacks next to bobbin's guard pages.
"""

import struct

import gdb
from gdb.unwinder import Unwinder, register_unwinder

_SAVED_BLOCK = 0x40
_SAVED_ORDER = ("r12", "r13", "r14", "r15", "rbx", "rbp")  # from offset 0x08


def _atomic(value):
    """The value inside a std::atomic<T>: libstdc++ keeps it in _M_i, in a
    base class for integers and pointers, and in member _M_base for bool."""
    try:
        return value["_M_i"]
    except gdb.error:
        return value["_M_base"]["_M_i"]


def _std_string(value):
    length = int(value["_M_string_length"])
    if length == 0:
        return ""
    return value["_M_dataplus"]["_M_p"].string(length=length)


def _enum_name(value):
    text = str(value)
    return text.rsplit("::", 1)[-1]


def _vector(value):
    start = value["_M_impl"]["_M_start"]
    finish = value["_M_impl"]["_M_finish"]
    count = int(finish - start)
    return [start[i] for i in range(count)]


def _runtimes():
    # By symbol, not by expression: the selected frame may be in C code
    # (a thread blocked in libc), where `::` does not parse. The library is
    # built with hidden visibility, so the variable is not a global symbol.
    name = "bobbin::internal::g_live_runtimes"
    sym = gdb.lookup_global_symbol(name) or gdb.lookup_static_symbol(name)
    if sym is None:
        try:
            sym = gdb.lookup_symbol(name)[0]
        except gdb.error:
            sym = None
    if sym is None:
        raise gdb.GdbError("bobbin: no bobbin runtime symbols here (is libbobbin loaded, with debug info?)")
    live = sym.value()
    if int(live) == 0:
        return []
    return _vector(live.dereference())


def _fibers():
    """(runtime index, fiber_control*) for every live fiber, by id."""
    out = []
    for n, rt in enumerate(_runtimes()):
        shards = rt.dereference()["registry_"]
        low, high = shards.type.range()
        for s in range(low, high + 1):
            f = shards[s]["head"]
            while int(f) != 0:
                out.append((n, f))
                f = f.dereference()["reg_next"]
    out.sort(key=lambda item: int(item[1].dereference()["id"]))
    return out


def _spawn_site(f):
    impl = f["spawned_at"]["_M_impl"]
    if int(impl) == 0:
        return ""
    impl = impl.dereference()
    return f'{impl["_M_file_name"].string()}:{int(impl["_M_line"])}'


def _find(fiber_id):
    for _, f in _fibers():
        if int(f.dereference()["id"]) == fiber_id:
            return f.dereference()
    raise gdb.GdbError(f"bobbin: no live fiber {fiber_id} (see `bobbin fibers`)")


def _saved_registers(f):
    """The registers a switched-out fiber resumes with, from its saved block."""
    state = _enum_name(_atomic(f["state"]))
    if state == "running":
        raise gdb.GdbError(f"bobbin: fiber {int(f['id'])} is running: its registers are its carrier's "
                           f"(carrier {int(_atomic(f['carrier']))}); use `thread N` and `bt`")
    if not bool(_atomic(f["started"])):
        raise gdb.GdbError(f"bobbin: fiber {int(f['id'])} has not run yet: it has no stack to show")
    fctx = int(f["ctx"]["fctx"])
    if fctx == 0:
        raise gdb.GdbError(f"bobbin: fiber {int(f['id'])} has no saved context")
    raw = bytes(gdb.selected_inferior().read_memory(fctx, _SAVED_BLOCK))
    words = struct.unpack("<8Q", raw)
    if words[7] == 0:
        # gdb's gcore reads memory a megabyte at a time and writes zeros for
        # a whole chunk when part of it is unreadable, as the guard pages
        # bobbin installs between stacks are. The kernel's core dumps keep
        # the stacks.
        raise gdb.GdbError(f"bobbin: fiber {int(f['id'])}'s saved registers read as zeros: this core has no fiber "
                           "stacks (made by gcore? use a core the kernel writes, e.g. after kill -ABRT)")
    regs = dict(zip(_SAVED_ORDER, words[1:7]))
    regs["rip"] = words[7]
    regs["rsp"] = fctx + _SAVED_BLOCK
    return regs


class _FrameId:
    def __init__(self, sp, pc):
        self.sp = sp
        self.pc = pc


class _FiberUnwinder(Unwinder):
    """While a thread is switched to a fiber, says that the caller of the
    thread's innermost frame is the fiber's switch point, with the fiber's
    saved registers; gdb's own unwinder takes it from there. Nothing is
    written to the process, so this works on a core file too."""

    def __init__(self):
        super().__init__("bobbin fiber")
        self.switched = {}  # thread global number -> (fiber id, (sp, pc) of its innermost frame, registers)

    def __call__(self, pending_frame):
        if not self.switched:
            return None
        thread = gdb.selected_thread()
        if thread is None or thread.global_num not in self.switched:
            return None
        _, innermost, regs = self.switched[thread.global_num]
        # Only the thread's innermost real frame (inline frames above it
        # share its registers) gets the fiber as its caller.
        sp = pending_frame.read_register("rsp")
        pc = pending_frame.read_register("rip")
        if (int(sp), int(pc)) != innermost:
            return None
        frame_id = _FrameId(sp, pc)
        info = pending_frame.create_unwind_info(frame_id)
        word = gdb.lookup_type("unsigned long")
        for name, value in regs.items():
            info.add_saved_register(name, gdb.Value(value).cast(word))
        return info


_UNWINDER = _FiberUnwinder()
register_unwinder(None, _UNWINDER, replace=True)


def _selected_thread():
    thread = gdb.selected_thread()
    if thread is None:
        raise gdb.GdbError("bobbin: no thread selected")
    return thread


def _thread_frames():
    """How many frames the thread itself shows before the fiber's: its
    innermost real frame and the inline frames gdb lists above it."""
    frame = gdb.newest_frame()
    count = 1
    while frame.type() == gdb.INLINE_FRAME and frame.older() is not None:
        frame = frame.older()
        count += 1
    return count


def _switch(fiber_id):
    regs = _saved_registers(_find(fiber_id))
    thread = _selected_thread()
    _UNWINDER.switched.pop(thread.global_num, None)
    gdb.invalidate_cached_frames()
    frame = gdb.newest_frame()
    innermost = (int(frame.read_register("rsp")), int(frame.read_register("rip")))
    _UNWINDER.switched[thread.global_num] = (fiber_id, innermost, regs)
    gdb.invalidate_cached_frames()


def _restore():
    thread = gdb.selected_thread()
    if thread is None or _UNWINDER.switched.pop(thread.global_num, None) is None:
        return False
    gdb.invalidate_cached_frames()
    return True


def _restore_all(_event=None):
    if _UNWINDER.switched:
        _UNWINDER.switched.clear()
        gdb.invalidate_cached_frames()


class BobbinCommand(gdb.Command):
    """bobbin fibers | bobbin bt ID | bobbin switch ID | bobbin restore"""

    def __init__(self):
        super().__init__("bobbin", gdb.COMMAND_STACK, gdb.COMPLETE_NONE, True)


class FibersCommand(gdb.Command):
    """List every live fiber: id, name, state, wait reason, carrier, spawn site."""

    def __init__(self):
        super().__init__("bobbin fibers", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        fibers = _fibers()
        runtimes = len(_runtimes())
        gdb.write(f"{len(fibers)} fibers in {runtimes} runtime{'s' if runtimes != 1 else ''}\n")
        gdb.write(f"{'id':>7}  {'runtime':>7}  {'state':<9} {'wait reason':<18} {'carrier':>7}  name / spawned at\n")
        for n, ptr in fibers:
            f = ptr.dereference()
            state = _enum_name(_atomic(f["state"]))
            reason = _enum_name(_atomic(f["reason"])) if state == "parked" else ""
            name = _std_string(f["name"])
            site = _spawn_site(f)
            label = f'"{name}"' if name else ""
            if site:
                label = f"{label} {site}".strip()
            gdb.write(f"{int(f['id']):>7}  {n:>7}  {state:<9} {reason:<18} {int(_atomic(f['carrier'])):>7}  {label}\n")


class BacktraceCommand(gdb.Command):
    """bobbin bt ID [N]: the backtrace of fiber ID (N frames), without leaving the current one."""

    def __init__(self):
        super().__init__("bobbin bt", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        args = gdb.string_to_argv(arg)
        if not args:
            raise gdb.GdbError("usage: bobbin bt ID [N]")
        fiber_id = int(args[0])
        f = _find(fiber_id)
        gdb.write(f"fiber {fiber_id} \"{_std_string(f['name'])}\" "
                  f"({_enum_name(_atomic(f['state']))}"
                  f"{', ' + _enum_name(_atomic(f['reason'])) if _enum_name(_atomic(f['state'])) == 'parked' else ''})\n")
        thread = _selected_thread()
        before = _UNWINDER.switched.pop(thread.global_num, None)
        gdb.invalidate_cached_frames()
        own = _thread_frames()
        _switch(fiber_id)
        try:
            lines = gdb.execute("bt" + (f" {int(args[1]) + own}" if len(args) > 1 else ""), False, True).splitlines()
        finally:
            if before is None:
                _restore()
            else:
                _UNWINDER.switched[thread.global_num] = before
                gdb.invalidate_cached_frames()
        # The first frames are the thread's own; the fiber's stack follows.
        for line in lines[own:]:
            gdb.write(line + "\n")


class SwitchCommand(gdb.Command):
    """bobbin switch ID: make the selected thread's frames fiber ID's, until `bobbin restore`."""

    def __init__(self):
        super().__init__("bobbin switch", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        args = gdb.string_to_argv(arg)
        if len(args) != 1:
            raise gdb.GdbError("usage: bobbin switch ID")
        _switch(int(args[0]))
        gdb.execute("frame", from_tty)


class RestoreCommand(gdb.Command):
    """bobbin restore: give the selected thread its own registers back after `bobbin switch`."""

    def __init__(self):
        super().__init__("bobbin restore", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        if _restore():
            gdb.execute("frame", from_tty)
        else:
            gdb.write("bobbin: this thread is not switched to a fiber\n")


BobbinCommand()
FibersCommand()
BacktraceCommand()
SwitchCommand()
RestoreCommand()
# Once the process runs again the saved registers are stale.
gdb.events.cont.connect(_restore_all)
