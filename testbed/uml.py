"""Boot User-Mode Linux with this machine's file system as root and run one command in it.

The build machines' own kernel has no ``af_key`` and no ESP; Debian's ``user-mode-linux``
package is a whole Linux 6.1 that runs as an ordinary process and has them as modules.
The guest sees the host's files through hostfs (same Python, same virtual environment,
same checkout), so the command's results come back as files.

Two host quirks are handled here rather than left to whoever runs the tests:

* On a host whose CPU has a large XSAVE area (AMX), UML 6.1 sizes its ptrace buffer for
  ``NT_X86_XSTATE`` too small, the host refuses ``PTRACE_SETREGSET`` with EFAULT and
  the guest's init dies. A seccomp filter on the UML process makes that regset look
  absent (EIO), and UML falls back to the classic FXSAVE registers.
* With only FXSAVE state carried across, AVX registers are not preserved for guest
  processes, so guest programs are told not to use AVX (glibc's tunables, OpenSSL's
  capability mask).
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import shlex
import shutil
import signal
import struct
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

DEFAULT_MODULES = ("af_key", "esp6", "esp4", "xfrm_user", "mip6", "ah6", "xfrm6_tunnel", "ip6_tunnel", "veth")
_GLIBC_FEATURES_OFF = "AVX AVX2 AVX512F AVX512VL AVX512BW AVX512DQ AVX512CD AVX_Fast_Unaligned_Load ERMS FSRM"
AVX_OFF = {
    "GLIBC_TUNABLES": "glibc.cpu.hwcaps=" + ",".join(f"-{name}" for name in _GLIBC_FEATURES_OFF.split()),
    "OPENSSL_ia32cap": "~0x1000000000000000:0",
}


class KernelUnavailable(Exception):
    """No usable User-Mode Linux on this machine; the message says what is missing."""


@dataclasses.dataclass(frozen=True)
class UmlKernel:
    binary: Path
    version: str
    modules: Path  # /usr/lib/uml/modules/<version>


@dataclasses.dataclass(frozen=True)
class BootResult:
    status: int | None  # the command's exit status; None if it never wrote one
    console: str
    seconds: float
    timed_out: bool


def find_kernel() -> UmlKernel:
    """The installed UML kernel, or ``KernelUnavailable`` saying how to get one.

    ``PFMIGRATE_UML`` names another kernel binary.
    """
    chosen = os.environ.get("PFMIGRATE_UML")
    if chosen is not None:
        found = chosen if Path(chosen).is_file() else None
    else:
        found = shutil.which("linux.uml") or ("/usr/bin/linux.uml" if Path("/usr/bin/linux.uml").exists() else None)
    if found is None and chosen is not None:
        raise KernelUnavailable(f"PFMIGRATE_UML={chosen} is not a file")
    if found is None:
        raise KernelUnavailable(
            "linux.uml not found: install Debian's user-mode-linux package (make test does, as root)"
        )
    root = Path("/usr/lib/uml/modules")
    versions = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not versions:
        raise KernelUnavailable(f"no UML kernel modules under {root}: the user-mode-linux package is incomplete")
    if shutil.which("modprobe") is None and not Path("/sbin/modprobe").exists():
        raise KernelUnavailable("modprobe not found: install the kmod package")
    return UmlKernel(Path(found), versions[-1].name, versions[-1])


# --- the seccomp filter (see the module docstring) ----------------------------------------

_PTRACE = 101  # x86_64
_PTRACE_GETREGSET = 0x4204
_NT_X86_XSTATE = 0x202
_AUDIT_ARCH_X86_64 = 0xC000003E
_EIO = 5


def _bpf(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def _hide_xstate_regset() -> None:
    """Runs in the child before exec: ptrace(GETREGSET, _, NT_X86_XSTATE) fails with EIO."""
    load, jeq, ret = 0x20, 0x15, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_RET|K
    program = b"".join(
        [
            _bpf(load, 4),  # seccomp_data.arch
            _bpf(jeq, _AUDIT_ARCH_X86_64, 0, 6),
            _bpf(load, 0),  # .nr
            _bpf(jeq, _PTRACE, 0, 4),
            _bpf(load, 16),  # .args[0] (request), low half
            _bpf(jeq, _PTRACE_GETREGSET, 0, 2),
            _bpf(load, 32),  # .args[2] (regset type), low half
            _bpf(jeq, _NT_X86_XSTATE, 1, 0),
            _bpf(ret, 0x7FFF0000),  # allow
            _bpf(ret, 0x00050000 | _EIO),  # errno
        ]
    )
    buffer = ctypes.create_string_buffer(program)

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(program) // 8, ctypes.addressof(buffer))
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_no_new_privs, pr_set_seccomp, seccomp_mode_filter = 38, 22, 2
    if libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(pr_set_seccomp, seccomp_mode_filter, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


# --- the guest's init --------------------------------------------------------------------------

_INIT = """#!/bin/sh
# pfmigrate testbed: PID 1 of a User-Mode Linux guest. Generated by testbed/uml.py.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
{exports}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /dev/shm 2>/dev/null
# The kernel runs this for module autoloading (crypto algorithms on the first SA) with
# an environment of its own, so it sets the AVX switches itself.
printf '#!/bin/sh\\nexport GLIBC_TUNABLES=%s\\nexec /sbin/modprobe -d %s "$@"\\n' \\
    "$GLIBC_TUNABLES" {moddir} > /run/modprobe
chmod +x /run/modprobe
echo /run/modprobe > /proc/sys/kernel/modprobe
for m in {modules}; do /run/modprobe "$m" || echo "testbed: could not load module $m"; done
ip link set lo up
cd {cwd}
{command} > {output} 2>&1
echo $? > {status}
sync
poweroff -f
"""


def boot(
    command: Sequence[str],
    *,
    workdir: Path,
    cwd: Path,
    env: Mapping[str, str] = {},
    modules: Sequence[str] = DEFAULT_MODULES,
    memory: str = "1024M",
    timeout: float = 900.0,
    kernel: UmlKernel | None = None,
) -> BootResult:
    """Boot UML, run ``command`` in ``cwd`` as root inside it, and power off.

    ``workdir`` (on the host) receives the init script, the module tree link, the
    command's output (``output.txt``) and its exit status.
    """
    kernel = kernel or find_kernel()
    workdir.mkdir(parents=True, exist_ok=True)
    moddir = workdir / "modtree"
    (moddir / "lib").mkdir(parents=True, exist_ok=True)
    link = moddir / "lib" / "modules"
    if not link.is_symlink():
        link.symlink_to(kernel.modules.parent)
    status_file, output_file = workdir / "status", workdir / "output.txt"
    status_file.unlink(missing_ok=True)
    guest_env = {**AVX_OFF, "HOME": "/root", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", **env}
    init = workdir / "init"
    init.write_text(
        _INIT.format(
            moddir=shlex.quote(str(moddir)),
            modules=" ".join(shlex.quote(m) for m in modules),
            exports="\n".join(f"export {k}={shlex.quote(v)}" for k, v in guest_env.items()),
            cwd=shlex.quote(str(cwd)),
            command=shlex.join(command),
            output=shlex.quote(str(output_file)),
            status=shlex.quote(str(status_file)),
        )
    )
    init.chmod(0o755)
    argv = [
        str(kernel.binary),
        f"mem={memory}",
        "rootfstype=hostfs",
        "rootflags=/",
        "rw",
        f"init={init}",
        "con=null",
        "con0=null,fd:2",
        f"umid=pfmigrate-{os.getpid()}-{time.monotonic_ns()}",
    ]
    console_file = workdir / "console.txt"
    started = time.monotonic()
    timed_out = False
    with console_file.open("wb") as console:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=console,
            preexec_fn=_hide_xstate_regset,
            start_new_session=True,
            env=None,
        )
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    seconds = time.monotonic() - started
    text = status_file.read_text().strip() if status_file.exists() else ""
    console_text = console_file.read_text(errors="replace")
    if output_file.exists():
        console_text += "\n--- command output ---\n" + output_file.read_text(errors="replace")
    return BootResult(int(text) if text.isdigit() else None, console_text, seconds, timed_out)
