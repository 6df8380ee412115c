#!/usr/bin/env python3
"""Writes agent-runner-sandbox.json: Docker's default seccomp policy plus what bubblewrap
needs to build the sandbox's namespaces inside the container.

Docker's default profile allows every system call except a documented list
(https://docs.docker.com/engine/security/seccomp/, "Significant syscalls blocked by the
default profile") and those it grants only with a capability the worker does not have
(the shipped securityContext drops them all). This script reproduces that policy from the
kernel's system call table (asm/unistd_64.h of the build machine, plus the newer calls
Docker allows by name), then adds back exactly:

  clone (with namespace flags), unshare   bubblewrap --unshare-user/-pid/-ipc/-uts/-net
  mount, umount2, pivot_root              bubblewrap builds the view and changes root

Everything else Docker blocks stays blocked (setns, keyctl, bpf, ptrace, the new mount
API, kernel modules, clocks, reboot, ...). The commands inside the sandbox run under the
sandbox's own, stricter filter (src/process/sandbox/seccomp.rs), which refuses namespace
changes and mounts again, and bubblewrap's --disable-userns stops nested namespaces.

Run: deploy/seccomp/generate.py > deploy/seccomp/agent-runner-sandbox.json
"""
import json
import re
import sys

UNISTD = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"

# Calls newer than the build machine's headers that Docker's default allows.
NEWER_ALLOWED = ["cachestat", "fchmodat2", "futex_requeue", "futex_wait", "futex_wake", "map_shadow_stack"]

# Blocked by Docker's default profile, or allowed there only with a capability.
DOCKER_BLOCKED = {
    "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "clone3", "create_module",
    "delete_module", "finit_module", "get_kernel_syms", "get_mempolicy", "init_module",
    "ioperm", "iopl", "kcmp", "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie",
    "mbind", "mount", "move_pages", "name_to_handle_at", "nfsservctl", "open_by_handle_at",
    "perf_event_open", "personality", "pivot_root", "process_vm_readv", "process_vm_writev",
    "ptrace", "query_module", "quotactl", "quotactl_fd", "reboot", "request_key",
    "set_mempolicy", "set_mempolicy_home_node", "setns", "settimeofday", "swapon", "swapoff",
    "sysfs", "_sysctl", "umount2", "unshare", "uselib", "userfaultfd", "ustat", "vm86",
    "vm86old", "clone",
    # capability-gated in Docker's profile (CAP_SYS_ADMIN, CAP_SYS_CHROOT, CAP_SYSLOG,
    # CAP_SYS_TTY_CONFIG, CAP_SYS_PTRACE, CAP_SYS_TIME, CAP_SYS_NICE, CAP_SYS_RAWIO)
    "chroot", "sethostname", "setdomainname", "syslog", "vhangup", "fanotify_init",
    "pidfd_getfd", "adjtimex", "stime", "pciconfig_read", "pciconfig_write",
    "pciconfig_iobase", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick",
    "mount_setattr", "io_uring_setup", "io_uring_enter", "io_uring_register",
    # not implemented by Linux
    "afs_syscall", "getpmsg", "putpmsg", "security", "tuxcall", "vserver",
}

# What bubblewrap needs to create the sandbox (see the docstring).
BUBBLEWRAP_NEEDS = ["clone", "unshare", "mount", "umount2", "pivot_root"]

ARCHES = [
    {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
    {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
]

# Docker allows these personality(2) values only: Linux, its 32-bit variant, and queries.
PERSONALITIES = [0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF]


def main():
    with open(UNISTD) as header:
        names = re.findall(r"#define __NR_(\w+) ", header.read())
    allowed = sorted((set(names) | set(NEWER_ALLOWED)) - DOCKER_BLOCKED)
    syscalls = [
        {"names": allowed, "action": "SCMP_ACT_ALLOW",
         "comment": "Docker's default allow list, without capability-gated calls"},
        {"names": BUBBLEWRAP_NEEDS, "action": "SCMP_ACT_ALLOW",
         "comment": "bubblewrap builds the sandbox's user, mount and other namespaces"},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
         "comment": "ENOSYS, as in Docker's profile: the C library falls back to clone"},
    ]
    for value in PERSONALITIES:
        syscalls.append({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                         "args": [{"index": 0, "value": value, "op": "SCMP_CMP_EQ"}]})
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
               "archMap": ARCHES, "syscalls": syscalls}
    json.dump(profile, sys.stdout, indent=2)
    sys.stdout.write("\n")


main()
