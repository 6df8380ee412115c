//! The seccomp filter every sandboxed command runs under: the second layer behind the
//! minimal file-system view and the namespaces.
//!
//! A classic-BPF program, assembled here and handed to bubblewrap (`--seccomp FD`), which
//! loads it just before it executes the command. Hand-assembled rather than compiled by a
//! library: it is a short deny-list with four argument checks, each instruction is
//! readable below, and the jump offsets are computed by one helper.
//!
//! Refusals return an errno (`EPERM`, or `ENOSYS` for `clone3`) rather than killing, so
//! programs get a clean error they can report. Only a foreign system-call ABI (i386 or x32
//! on x86_64, arm32 on aarch64) kills the process: none of the deny-list's numbers would
//! mean the same there. Modelled on Anthropic's sandbox-runtime (bubblewrap plus a filter
//! refusing `socket(AF_UNIX, ...)`) and Docker's default profile for the rest.

/// `SECCOMP_RET_ALLOW`.
const RET_ALLOW: u32 = 0x7fff_0000;
/// `SECCOMP_RET_KILL_PROCESS`.
const RET_KILL_PROCESS: u32 = 0x8000_0000;
/// `SECCOMP_RET_ERRNO`; the errno is in the low 16 bits.
const RET_ERRNO: u32 = 0x0005_0000;

/// `BPF_LD | BPF_W | BPF_ABS`: load a 32-bit word of `struct seccomp_data`.
const LOAD_WORD: u16 = 0x20;
/// `BPF_JMP | BPF_JEQ | BPF_K`.
const JUMP_IF_EQUAL: u16 = 0x15;
/// `BPF_JMP | BPF_JGE | BPF_K`.
const JUMP_IF_AT_LEAST: u16 = 0x35;
/// `BPF_JMP | BPF_JSET | BPF_K`: jump if any of the bits is set.
const JUMP_IF_ANY_BIT: u16 = 0x45;
/// `BPF_RET | BPF_K`.
const RETURN: u16 = 0x06;

/// Offsets into `struct seccomp_data { int nr; u32 arch; u64 ip; u64 args[6]; }`.
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
/// The low 32 bits of `args[0]` (both supported architectures are little-endian). Every
/// argument checked here is a 32-bit `int` or flags word, which the kernel truncates too.
const OFFSET_ARG0_LOW: u32 = 16;

/// `AUDIT_ARCH_X86_64`, `AUDIT_ARCH_AARCH64`: the only system-call ABI allowed.
#[cfg(target_arch = "x86_64")]
const NATIVE_AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const NATIVE_AUDIT_ARCH: u32 = 0xc000_00b7;

/// `__X32_SYSCALL_BIT`: x32 calls share the x86_64 arch value and set this bit instead.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// `CLONE_NEWUSER`: a new user namespace would give the command every capability in it.
const CLONE_NEWUSER: u32 = 0x1000_0000;

/// `personality()` values a command may set: Docker's allow-list (plain Linux, 32-bit
/// Linux, the 2.6-uname emulation, both, and the query `0xffffffff`). Everything else —
/// notably `ADDR_NO_RANDOMIZE`, which helps exploits — is refused.
const ALLOWED_PERSONALITIES: &[u32] = &[0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// System calls refused outright with `EPERM`, each with the reason.
fn refused_syscalls() -> Vec<(libc::c_long, &'static str)> {
    let mut refused = vec![
        (libc::SYS_ptrace, "reading or steering another process"),
        (libc::SYS_process_vm_readv, "reading another process's memory"),
        (libc::SYS_process_vm_writev, "writing another process's memory"),
        (libc::SYS_mount, "changing the file-system view"),
        (libc::SYS_umount2, "uncovering what a mount hides"),
        (libc::SYS_pivot_root, "changing the root"),
        (libc::SYS_move_mount, "the new mount API: changing the file-system view"),
        (libc::SYS_open_tree, "the new mount API: cloning a mount"),
        (libc::SYS_fsopen, "the new mount API: a new file system"),
        (libc::SYS_fsmount, "the new mount API: a new mount"),
        (libc::SYS_fsconfig, "the new mount API: configuring a file system"),
        (libc::SYS_fspick, "the new mount API: reconfiguring a mount"),
        (libc::SYS_mount_setattr, "the new mount API: changing mount flags"),
        (libc::SYS_keyctl, "the kernel keyring is not namespaced"),
        (libc::SYS_add_key, "the kernel keyring is not namespaced"),
        (libc::SYS_request_key, "the kernel keyring is not namespaced"),
        (libc::SYS_bpf, "loading kernel programs"),
        (libc::SYS_perf_event_open, "kernel profiling: side channels and a large attack surface"),
        (libc::SYS_userfaultfd, "a classic tool for widening kernel race windows"),
        (libc::SYS_unshare, "new namespaces (a user namespace grants capabilities in it)"),
        (libc::SYS_setns, "joining other namespaces"),
        (libc::SYS_open_by_handle_at, "opening files by handle, around the mount view"),
        (libc::SYS_kexec_load, "replacing the kernel"),
        (libc::SYS_kexec_file_load, "replacing the kernel"),
        (libc::SYS_init_module, "loading kernel modules"),
        (libc::SYS_finit_module, "loading kernel modules"),
        (libc::SYS_delete_module, "unloading kernel modules"),
        (libc::SYS_reboot, "rebooting the host"),
        (libc::SYS_swapon, "host swap"),
        (libc::SYS_swapoff, "host swap"),
        (libc::SYS_syslog, "reading the kernel log"),
        (libc::SYS_acct, "host process accounting"),
        (libc::SYS_io_uring_setup, "io_uring performs socket and file operations seccomp never sees"),
        (libc::SYS_io_uring_enter, "io_uring performs socket and file operations seccomp never sees"),
        (libc::SYS_io_uring_register, "io_uring performs socket and file operations seccomp never sees"),
    ];
    #[cfg(target_arch = "x86_64")]
    refused.extend([
        (libc::SYS_iopl, "raw I/O port access"),
        (libc::SYS_ioperm, "raw I/O port access"),
        (libc::SYS_uselib, "an obsolete loader path"),
    ]);
    refused
}

/// One classic-BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Instruction {
    code: u16,
    jump_if_true: u8,
    jump_if_false: u8,
    k: u32,
}

const fn op(code: u16, k: u32) -> Instruction {
    Instruction { code, jump_if_true: 0, jump_if_false: 0, k }
}

const fn jump(code: u16, k: u32, jump_if_true: u8, jump_if_false: u8) -> Instruction {
    Instruction { code, jump_if_true, jump_if_false, k }
}

const fn refuse(errno: i32) -> Instruction {
    op(RETURN, RET_ERRNO | (errno as u32 & 0xffff))
}

/// Appends "if the call is `nr`, run `body` (which must end in a return); otherwise skip
/// it". `body` is short, so its length always fits the 8-bit jump offset.
fn when_syscall(program: &mut Vec<Instruction>, nr: libc::c_long, body: &[Instruction]) {
    let skip = u8::try_from(body.len()).unwrap_or_else(|_| unreachable!("a syscall block is short"));
    program.push(jump(JUMP_IF_EQUAL, nr as u32, 0, skip));
    program.extend_from_slice(body);
}

/// The filter as instructions.
fn program() -> Vec<Instruction> {
    let mut program = vec![
        op(LOAD_WORD, OFFSET_ARCH),
        jump(JUMP_IF_EQUAL, NATIVE_AUDIT_ARCH, 1, 0),
        op(RETURN, RET_KILL_PROCESS),
        op(LOAD_WORD, OFFSET_NR),
    ];
    #[cfg(target_arch = "x86_64")]
    program.extend([jump(JUMP_IF_AT_LEAST, X32_SYSCALL_BIT, 0, 1), op(RETURN, RET_KILL_PROCESS)]);
    for (nr, _reason) in refused_syscalls() {
        when_syscall(&mut program, nr, &[refuse(libc::EPERM)]);
    }
    // clone3 passes its flags in memory, where a filter cannot look: refuse it as absent,
    // so libc falls back to clone, whose flags are checked below.
    when_syscall(&mut program, libc::SYS_clone3, &[refuse(libc::ENOSYS)]);
    // Every host socket file and abstract socket is reached through socket(AF_UNIX);
    // socketpair (already connected, reaches nothing) stays allowed.
    when_syscall(
        &mut program,
        libc::SYS_socket,
        &[
            op(LOAD_WORD, OFFSET_ARG0_LOW),
            jump(JUMP_IF_EQUAL, libc::AF_UNIX as u32, 0, 1),
            refuse(libc::EPERM),
            op(RETURN, RET_ALLOW),
        ],
    );
    // A new user namespace through clone, as through unshare.
    when_syscall(
        &mut program,
        libc::SYS_clone,
        &[
            op(LOAD_WORD, OFFSET_ARG0_LOW),
            jump(JUMP_IF_ANY_BIT, CLONE_NEWUSER, 0, 1),
            refuse(libc::EPERM),
            op(RETURN, RET_ALLOW),
        ],
    );
    let mut personality = vec![op(LOAD_WORD, OFFSET_ARG0_LOW)];
    for (index, value) in ALLOWED_PERSONALITIES.iter().enumerate() {
        // Jump over the remaining comparisons and the refusal, onto the allow.
        let to_allow = u8::try_from(ALLOWED_PERSONALITIES.len() - index).unwrap_or(u8::MAX);
        personality.push(jump(JUMP_IF_EQUAL, *value, to_allow, 0));
    }
    personality.extend([refuse(libc::EPERM), op(RETURN, RET_ALLOW)]);
    when_syscall(&mut program, libc::SYS_personality, &personality);
    program.push(op(RETURN, RET_ALLOW));
    program
}

/// The filter as bubblewrap reads it from `--seccomp FD`: an array of
/// `struct sock_filter` in native byte order.
pub fn compiled_filter() -> Vec<u8> {
    program()
        .iter()
        .flat_map(|i| {
            let mut bytes = Vec::with_capacity(8);
            bytes.extend(i.code.to_ne_bytes());
            bytes.push(i.jump_if_true);
            bytes.push(i.jump_if_false);
            bytes.extend(i.k.to_ne_bytes());
            bytes
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program the way the kernel does, for one call.
    fn verdict(nr: libc::c_long, arch: u32, arg0: u32) -> u32 {
        let program = program();
        let mut accumulator = 0u32;
        let mut pc = 0usize;
        loop {
            let i = program[pc];
            pc += 1;
            match i.code {
                LOAD_WORD => {
                    accumulator = match i.k {
                        OFFSET_NR => nr as u32,
                        OFFSET_ARCH => arch,
                        OFFSET_ARG0_LOW => arg0,
                        other => panic!("unexpected load at {other}"),
                    }
                }
                RETURN => return i.k,
                code => {
                    let taken = match code {
                        JUMP_IF_EQUAL => accumulator == i.k,
                        JUMP_IF_AT_LEAST => accumulator >= i.k,
                        JUMP_IF_ANY_BIT => accumulator & i.k != 0,
                        other => panic!("unexpected opcode {other:#x}"),
                    };
                    pc += usize::from(if taken { i.jump_if_true } else { i.jump_if_false });
                }
            }
        }
    }

    fn native(nr: libc::c_long, arg0: u32) -> u32 {
        verdict(nr, NATIVE_AUDIT_ARCH, arg0)
    }

    #[test]
    fn unix_sockets_are_refused_and_network_sockets_and_socketpairs_allowed() {
        assert_eq!(native(libc::SYS_socket, libc::AF_UNIX as u32), RET_ERRNO | libc::EPERM as u32);
        assert_eq!(native(libc::SYS_socket, libc::AF_INET as u32), RET_ALLOW);
        assert_eq!(native(libc::SYS_socketpair, libc::AF_UNIX as u32), RET_ALLOW);
    }

    #[test]
    fn the_deny_list_is_refused_with_eperm_and_clone3_with_enosys() {
        for (nr, reason) in refused_syscalls() {
            assert_eq!(native(nr, 0), RET_ERRNO | libc::EPERM as u32, "{nr}: {reason}");
        }
        assert_eq!(native(libc::SYS_clone3, 0), RET_ERRNO | libc::ENOSYS as u32);
        assert_eq!(native(libc::SYS_read, 0), RET_ALLOW);
        assert_eq!(native(libc::SYS_execve, 0), RET_ALLOW);
    }

    #[test]
    fn clone_is_allowed_without_a_new_user_namespace() {
        let fork_flags = libc::SIGCHLD as u32;
        assert_eq!(native(libc::SYS_clone, fork_flags), RET_ALLOW);
        assert_eq!(native(libc::SYS_clone, fork_flags | CLONE_NEWUSER), RET_ERRNO | libc::EPERM as u32);
    }

    #[test]
    fn only_harmless_personalities_are_allowed() {
        for value in ALLOWED_PERSONALITIES {
            assert_eq!(native(libc::SYS_personality, *value), RET_ALLOW, "{value:#x}");
        }
        let no_aslr = 0x0004_0000;
        assert_eq!(native(libc::SYS_personality, no_aslr), RET_ERRNO | libc::EPERM as u32);
    }

    #[test]
    fn a_foreign_system_call_abi_kills_the_process() {
        // AUDIT_ARCH_I386 (or arm32 on aarch64): the numbers mean other calls there.
        assert_eq!(verdict(libc::SYS_read, 0x4000_0003, 0), RET_KILL_PROCESS);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(native(libc::SYS_read | X32_SYSCALL_BIT as libc::c_long, 0), RET_KILL_PROCESS);
    }

    #[test]
    fn the_compiled_filter_is_eight_bytes_an_instruction() {
        assert_eq!(compiled_filter().len(), program().len() * 8);
        // The kernel's limit on a filter's length.
        assert!(program().len() < 4096);
    }
}
