"""The OS-level wall around a sandbox worker: what a script that got past RestrictedPython and
our guards would still be kept from, by the kernel.

`lockdown()` is called by both workers (`worker.py`, `method_worker.py`) right after `isolate`,
and raises these layers in this order (each can be selected alone, so tests can try each):

  descriptors    close every inherited file descriptor but the protocol's (uvloop's
                 subprocess_exec ignores close_fds: a worker inherits every inheritable fd of
                 the runtime, such as uvicorn's listening socket)
  environment    empty os.environ (the parent starts workers with a tiny environment already,
                 see `process.worker_env`) and cwd `/`: no store path, no secrets
  (warm-up)      the worker's own imports and lazy initialisations, and this module's
                 libraries: after the next steps nothing outside Python's folders can be read
  no_new_privs   PR_SET_NO_NEW_PRIVS: no set-uid gains, and the precondition of the next two
  landlock       the file system is read-only beneath Python's standard library, the installed
                 packages and the knot package, and closed everywhere else (/proc of other
                 processes, the project, the store, /etc...); no writes, no execution anywhere
  (threads)      the method worker starts its call threads here: Landlock confines the threads
                 a thread creates after restricting itself, not those that exist already
  rlimits        address space, no file writes (FSIZE 0), 16 descriptors, no core dumps
  seccomp        a syscall filter on every thread (TSYNC): no processes, no exec, no sockets,
                 no signals to other processes, no opening for writing, no file system changes,
                 no new rlimits, none of the kernel's attack surface a worker never uses

rlimits go before seccomp (not after): the filter refuses setrlimit/prlimit64 with a new limit,
which is what keeps root from raising them back, so they must be set before it loads.

Every layer is best effort: one that this machine cannot raise (not Linux, no libseccomp, no
Landlock in the kernel) is reported missing, with the reason, and the worker runs with the
others. This module imports nothing of the runtime: a worker imports only the sandbox package.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import sys
import sysconfig
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ALL_LAYERS",
    "DESCRIPTORS",
    "ENVIRONMENT",
    "LANDLOCK",
    "MAX_OPEN_FILES",
    "NO_NEW_PRIVS",
    "RLIMITS",
    "SECCOMP",
    "WORKER_ENV_NAMES",
    "Walls",
    "lockdown",
    "readable_dirs",
]

DESCRIPTORS = "descriptors"
ENVIRONMENT = "environment"
NO_NEW_PRIVS = "no_new_privs"
LANDLOCK = "landlock"
RLIMITS = "rlimits"
SECCOMP = "seccomp"
ALL_LAYERS = (DESCRIPTORS, ENVIRONMENT, NO_NEW_PRIVS, LANDLOCK, RLIMITS, SECCOMP)

# What a worker's environment may hold, taken from the runtime's when set: TZ so that scripts'
# local time is the runtime's, LD_LIBRARY_PATH for an interpreter that cannot start without it.
# Nothing else: the runtime's variables (KNOT_*, tokens, cloud credentials) stay with it.
WORKER_ENV_NAMES = ("TZ", "LD_LIBRARY_PATH")
MAX_OPEN_FILES = 16

_PR_SET_NO_NEW_PRIVS = 38
_LANDLOCK_RULE_PATH_BENEATH = 1


@dataclass
class Walls:
    """Which layers are up, and why each requested one that is not could not be raised."""

    up: tuple[str, ...] = ()
    missing: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"walls": list(self.up), "missing": dict(self.missing)}


def lockdown(
    *,
    memory_mb: int,
    layers: Collection[str] = ALL_LAYERS,
    keep_fds: Collection[int] = (),
    warm_up: Callable[[], object] | None = None,
    start_threads: Callable[[], object] | None = None,
) -> Walls:
    """Raise `layers` around this process, in the order of the module's docstring.

    `keep_fds` are the descriptors (>= 3) the worker opened for its protocol; `warm_up` runs
    before the file system closes, `start_threads` after Landlock and before seccomp.
    """
    unknown = set(layers) - set(ALL_LAYERS)
    if unknown:
        raise ValueError(f"unknown sandbox layers: {sorted(unknown)}")
    walls = Walls()

    def attempt(layer: str, step: Callable[[], object]) -> None:
        if layer not in layers:
            return
        try:
            step()
        except Exception as exc:  # best effort: the worker goes on with the other layers
            walls.missing[layer] = f"{type(exc).__name__}: {exc}"
        else:
            walls.up += (layer,)

    attempt(DESCRIPTORS, lambda: _close_descriptors(keep_fds))
    attempt(ENVIRONMENT, _empty_environment)
    if warm_up is not None:
        warm_up()
    # Load what the later layers need while files can still be read (and, for RLIMIT_AS, keep
    # a way to read our own size: /proc/self is closed to us once Landlock is up).
    seccomp_module = _load_pyseccomp() if SECCOMP in layers else None
    landlock_module = _load_landlock() if LANDLOCK in layers else None
    status_fd = _open_quietly("/proc/self/status") if RLIMITS in layers else -1
    try:
        attempt(NO_NEW_PRIVS, _no_new_privs)
        attempt(LANDLOCK, lambda: _landlock(landlock_module, readable_dirs()))
        if start_threads is not None:
            start_threads()
        attempt(RLIMITS, lambda: _rlimits(memory_mb, status_fd))
    finally:
        if status_fd >= 0:
            os.close(status_fd)
    attempt(SECCOMP, lambda: _seccomp(seccomp_module))
    return walls


# -- descriptors and environment ---------------------------------------------------------


def _close_descriptors(keep: Collection[int]) -> None:
    """Close every descriptor from 3 up but `keep`."""
    try:
        # Exactly the open ones (the listing's own descriptor is closed again by then).
        open_fds = {int(name) for name in os.listdir("/proc/self/fd")}
    except OSError:  # no /proc: every number below the limit
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        limit = soft if 0 < soft < 1 << 20 else 1 << 16
        open_fds = set(range(3, limit))
    for fd in sorted(open_fds - set(keep)):
        if fd >= 3:
            with contextlib.suppress(OSError):
                os.close(fd)


def _empty_environment() -> None:
    for name in list(os.environ):
        if name not in WORKER_ENV_NAMES:
            del os.environ[name]
    os.chdir("/")


# -- no_new_privs and Landlock -----------------------------------------------------------


def _libc() -> ctypes.CDLL:
    if not sys.platform.startswith("linux"):
        raise OSError(errno.ENOSYS, "only on Linux")
    return ctypes.CDLL(None, use_errno=True)


def _no_new_privs() -> None:
    libc = _libc()
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _load_landlock() -> Any:
    try:
        import landlock.plumbing
    except ImportError:
        return None
    return landlock.plumbing


def readable_dirs() -> tuple[str, ...]:
    """Where a worker may still read: Python's standard library, the installed packages and the
    knot package (which an editable install keeps outside them). Nothing may be written."""
    paths = sysconfig.get_paths()
    wanted = [paths.get(key, "") for key in ("stdlib", "platstdlib", "purelib", "platlib")]
    wanted.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    found: list[str] = []
    for path in wanted:
        real = os.path.realpath(path) if path else ""
        if real and os.path.isdir(real) and real not in found:
            found.append(real)
    return tuple(found)


def _landlock(plumbing: Any, dirs: Collection[str]) -> None:
    if plumbing is None:
        raise ImportError("the landlock package is not installed")

    def call(function: Callable[..., int], *args: Any) -> int:
        # The package's error check reads errno even after a success: start from zero.
        ctypes.set_errno(0)
        return function(*args)

    access = plumbing.FSAccess
    handled = access.all()  # every file-system right this kernel's Landlock ABI knows
    attr = plumbing.RulesetAttr(handled)
    ruleset = call(plumbing.get_create_ruleset(), ctypes.byref(attr), ctypes.sizeof(attr), 0)
    try:
        read_only = access.READ_FILE | access.READ_DIR
        for path in dirs:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = plumbing.PathBeneathAttr(read_only, fd)
                call(plumbing.get_add_rule(), ruleset, _LANDLOCK_RULE_PATH_BENEATH,
                     ctypes.byref(rule), 0)  # fmt: skip
            finally:
                os.close(fd)
        _no_new_privs()  # landlock_restrict_self needs it unless we hold CAP_SYS_ADMIN
        call(plumbing.get_restrict_self(), ruleset, 0)
    finally:
        os.close(ruleset)


# -- rlimits -----------------------------------------------------------------------------


def _open_quietly(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return -1


def _vm_size(status_fd: int) -> int:
    """Our address space now, in bytes, from a /proc/self/status opened before Landlock."""
    if status_fd < 0:
        return 0
    try:
        text = os.pread(status_fd, 1 << 14, 0).decode("ascii", "replace")
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def _rlimits(memory_mb: int, status_fd: int) -> None:
    """Address space (`memory_mb` above what we use now), no file writes, few descriptors,
    no core dumps, no child processes (RLIMIT_NPROC binds no root: seccomp does that)."""
    import resource

    def limit(which: int, value: int) -> None:
        # Not supported here, or above the hard limit: keep what we have.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(which, (value, value))

    if memory_mb > 0:
        limit(resource.RLIMIT_AS, _vm_size(status_fd) + memory_mb * 1024 * 1024)
    limit(resource.RLIMIT_FSIZE, 0)
    limit(resource.RLIMIT_CORE, 0)
    limit(resource.RLIMIT_NOFILE, MAX_OPEN_FILES)
    if hasattr(resource, "RLIMIT_NPROC") and os.getuid() != 0:
        limit(resource.RLIMIT_NPROC, 0)


# -- seccomp -----------------------------------------------------------------------------

# Refused with EPERM whatever their arguments.
_DENIED = (
    # new processes and programs (a thread is a clone with CLONE_THREAD: see _seccomp)
    "execve", "execveat", "fork", "vfork",
    # sockets: the network, and local ones to other processes
    "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
    # other processes' memory and descriptors
    "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise",
    "pidfd_open", "pidfd_send_signal", "pidfd_getfd",
    # files: creating, changing, removing (opening for writing: see _seccomp)
    "creat", "openat2", "open_by_handle_at", "truncate", "ftruncate", "fallocate",
    "unlink", "unlinkat", "rename", "renameat", "renameat2", "mkdir", "mkdirat", "rmdir",
    "link", "linkat", "symlink", "symlinkat", "chmod", "fchmod", "fchmodat", "fchmodat2",
    "chown", "fchown", "lchown", "fchownat", "mknod", "mknodat",
    "utime", "utimes", "utimensat", "futimesat",
    "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr",
    # mounts and namespaces
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns",
    "fsopen", "fsconfig", "fsmount", "fspick", "open_tree", "move_mount", "mount_setattr",
    # kernel interfaces a worker never uses, each a frequent source of exploits
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "memfd_create", "memfd_secret", "keyctl", "add_key", "request_key",
    # limits (prlimit64 reads them too, so only setting one is refused: see _seccomp)
    "setrlimit",
    # the machine, and other processes' scheduling: what root could do otherwise
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
    "swapon", "swapoff", "acct", "quotactl", "syslog", "settimeofday", "clock_settime",
    "clock_adjtime", "adjtimex", "sethostname", "setdomainname", "iopl", "ioperm",
    "fanotify_init", "setpriority", "sched_setscheduler", "sched_setparam", "sched_setattr",
    "sched_setaffinity", "ioprio_set", "migrate_pages", "move_pages",
)  # fmt: skip
# Signals: allowed to ourselves only (the first argument is the pid or thread-group id).
_SIGNALS = ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")
# Any one of these in open's flags is a way to write, create or truncate.
_WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND")
_CLONE_THREAD = 0x00010000
# CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET
_CLONE_NAMESPACES = (0x20000, 0x2000000, 0x4000000, 0x8000000, 0x10000000, 0x20000000, 0x40000000)
# fcntl F_SETOWN / F_SETOWN_EX and ioctl FIOSETOWN / SIOCSPGRP name a process to receive
# SIGIO (by default fatal) when a descriptor becomes ready: a signal to the parent by the
# back door. TIOCSTI types into a terminal.
_FCNTL_DENIED = (8, 15)
_IOCTL_DENIED = (0x8901, 0x8902, 0x5412)
_INT_MASK = 0xFFFF_FFFF  # the kernel reads these arguments as 32-bit ints: compare just those


def _load_pyseccomp() -> Any:
    """Import pyseccomp, which opens libc and libseccomp as it is imported.

    It looks both up with ctypes.util.find_library, which runs /sbin/ldconfig once for each:
    ~15 ms and two processes per worker start. When the usual sonames load directly, it gets
    those instead. None when the package or libseccomp.so.2 is missing.
    """
    if "pyseccomp" in sys.modules:
        return sys.modules["pyseccomp"]
    import ctypes.util

    known: dict[str, str] = {}
    for name, soname in (("c", "libc.so.6"), ("seccomp", "libseccomp.so.2")):
        with contextlib.suppress(OSError):
            ctypes.CDLL(soname)
            known[name] = soname
    original = ctypes.util.find_library

    def find_library(name: str) -> str | None:
        return known.get(name) or original(name)

    setattr(ctypes.util, "find_library", find_library)  # noqa: B010 (mypy: no assigning a def)
    try:
        import pyseccomp
    except Exception:  # ImportError, or RuntimeError("Unable to find libseccomp")
        return None
    finally:
        setattr(ctypes.util, "find_library", original)  # noqa: B010
    return pyseccomp


_CTL_OPTIMIZE = 8  # SCMP_FLTATR_CTL_OPTIMIZE, which pyseccomp's Attr does not name


def _seccomp(sc: Any) -> None:
    if sc is None:
        raise ImportError("pyseccomp or libseccomp.so.2 is missing")
    deny = sc.ERRNO(errno.EPERM)
    rules = sc.SyscallFilter(sc.ALLOW)
    rules.set_attr(sc.Attr.CTL_TSYNC, 1)  # every thread, the method worker's call threads too
    # Every syscall runs the filter; a binary tree over syscall numbers instead of a list of
    # ~120 comparisons took ~2 us off each event a script sink handles (libseccomp >= 2.5).
    with contextlib.suppress(OSError, ValueError):
        rules.set_attr(_CTL_OPTIMIZE, 2)

    def add(action: int, name: str, *args: Any) -> None:
        if sc.resolve_syscall(sc.Arch.NATIVE, name) == -1:
            return  # unknown to this libseccomp, older than the syscall
        rules.add_rule(action, name, *args)

    for name in _DENIED:
        add(deny, name)
    # Threads, but no processes: clone without CLONE_THREAD is a fork; namespaces are refused.
    flags_arg = 1 if os.uname().machine.startswith("s390") else 0  # s390 swaps clone's args
    add(deny, "clone", sc.Arg(flags_arg, sc.MASKED_EQ, _CLONE_THREAD, 0))
    for flag in _CLONE_NAMESPACES:
        add(deny, "clone", sc.Arg(flags_arg, sc.MASKED_EQ, flag, flag))
    # clone3 passes its flags in memory, out of the filter's sight: ENOSYS makes glibc fall
    # back to clone (for pthread_create too), which the rules above can read.
    add(sc.ERRNO(errno.ENOSYS), "clone3")
    me = os.getpid()
    for name in _SIGNALS:
        add(deny, name, sc.Arg(0, sc.NE, me))
    for flag in (getattr(os, name) for name in _WRITE_FLAGS):
        add(deny, "open", sc.Arg(1, sc.MASKED_EQ, flag, flag))
        add(deny, "openat", sc.Arg(2, sc.MASKED_EQ, flag, flag))
    add(deny, "prlimit64", sc.Arg(2, sc.NE, 0))  # a new limit; reading one stays allowed
    for command in _FCNTL_DENIED:
        add(deny, "fcntl", sc.Arg(1, sc.MASKED_EQ, _INT_MASK, command))
    for request in _IOCTL_DENIED:
        add(deny, "ioctl", sc.Arg(1, sc.MASKED_EQ, _INT_MASK, request))
    rules.load()
