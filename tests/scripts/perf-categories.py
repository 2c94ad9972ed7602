#!/usr/bin/env python3
"""Sorts the samples of one command in `perf script` output into categories by their stacks.

    perf record -a -g -F 2000 -o churn.perf -- <bench command>
    perf script -i churn.perf --comm podroute | tests/scripts/perf-categories.py podroute
    perf script -i churn.perf --comm podroute | tests/scripts/perf-categories.py podroute \
        --frames 'do_setlink' --without 'veth_newlink'

Each sample goes to the first category (in the order below) whose pattern matches any frame of
its stack, so read a share as "samples under this, and under none of the categories above it".
`perf report --children` is no substitute here: user stacks without frame pointers break its
call chains (it gave a third of the CNI plugin's samples to process exit). With --frames, it
prints instead how often each frame occurs in the samples that have a frame matching the
pattern (and none matching --without).
"""
import argparse
import collections
import re
import sys

CATEGORIES = [
    ("glibc start-up", r"handle_amd|init_cpu_features|update_active|get_common_indices|"
     r"get_extended_indices|init_cacheinfo|__libc_start_main|_dl_relocate|apply_irel|"
     r"__libc_setup_tls|_dl_non_dynamic_init"),
    ("exec", r"bprm_execve|do_execveat|begin_new_exec|load_elf_binary"),
    ("exit", r"do_exit|do_group_exit|exit_mmap|exit_files"),
    ("thread", r"copy_process|kernel_clone|__x64_sys_clone|start_thread|__pthread_create|clone3"),
    ("veth creation", r"veth_newlink|rtnl_newlink_create"),
    ("waiting for RTNL", r"__mutex_lock|mutex_spin_on_owner|rtnl_lock|osq_lock|__rtnl_lock"),
    ("link changes", r"do_setlink|dev_change_flags|__dev_change_flags|dev_change_name|rtnl_setlink"),
    ("link lookups", r"rtnl_getlink|rtnl_dump_ifinfo|rtnl_fill_ifinfo"),
    ("routes", r"inet_rtm_newroute|fib_table_insert|inet6_rtm_newroute|ip_route_output|"
     r"fib_table_lookup|rtm_dump|inet_dump_fib"),
    ("addresses", r"inet_rtm_newaddr|inet_rtm_deladdr|inet_dump_ifaddr|inet6_dump"),
    ("neighbours", r"neigh_"),
    ("other netlink", r"netlink_sendmsg|netlink_recvmsg|netlink_rcv|__sys_sendto|__sys_recvfrom|"
     r"netlink_"),
    ("sysctl files", r"proc_sys_"),
    ("setns", r"setns"),
    ("flock", r"flock|locks_"),
    ("IPAM files", r"ext4_|vfs_|do_sys_open|path_openat|do_unlinkat|do_symlinkat|do_linkat|"
     r"filename_|link_path_walk|do_filp_open|__x64_sys_statx|do_readlinkat|__fput|jbd2"),
    ("page faults", r"exc_page_fault|handle_mm_fault"),
    ("mmap", r"do_mmap|__vm_munmap|do_vmi_munmap|mprotect"),
]


def samples(lines, comm):
    """Yields the frames (function names) of each sample of `comm`."""
    frames, mine = [], False
    for line in lines:
        if not line.strip():
            if mine:
                yield frames
            frames, mine = [], False
        elif not line.startswith((" ", "\t")):
            if mine:
                yield frames
            frames, mine = [], line.split()[0] == comm
        elif mine:
            # "<address> <symbol>+0x<offset> (<object>)"; a symbol may hold spaces.
            parts = line.strip().split(maxsplit=1)
            if len(parts) == 2:
                frames.append(parts[1].rsplit(" (", 1)[0].rsplit("+0x", 1)[0])
    if mine:
        yield frames


def categories(stacks):
    compiled = [(name, re.compile(pattern)) for name, pattern in CATEGORIES]
    counts, total = collections.Counter(), 0
    for frames in stacks:
        total += 1
        name = next((n for n, p in compiled if any(p.search(f) for f in frames)), None)
        counts[name or "other: " + (frames[0] if frames else "?")] += 1
    print(f"{total} samples")
    named = [(n, c) for n, c in counts.most_common() if not n.startswith("other: ")]
    for name, count in named:
        print(f"{100 * count / max(total, 1):6.1f} % {name}")
    other = [(n, c) for n, c in counts.most_common() if n.startswith("other: ")]
    print(f"{100 * sum(c for _, c in other) / max(total, 1):6.1f} % other; its top frames:")
    for name, count in other[:15]:
        print(f"   {100 * count / max(total, 1):6.1f} % {name[7:]}")


def frames_under(stacks, pattern, without):
    want, skip = re.compile(pattern), re.compile(without) if without else None
    counts, n = collections.Counter(), 0
    for frames in stacks:
        if any(want.search(f) for f in frames) and not (skip and any(skip.search(f) for f in frames)):
            n += 1
            counts.update(set(frames))
    print(f"{n} samples")
    for frame, count in counts.most_common(50):
        print(f"{count:7d} {frame}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("comm", help="the command name of the processes to count")
    parser.add_argument("--frames", help="print frame counts under this pattern instead")
    parser.add_argument("--without", help="with --frames: leave out samples matching this")
    args = parser.parse_args()
    stacks = samples(sys.stdin, args.comm)
    if args.frames:
        frames_under(stacks, args.frames, args.without)
    else:
        categories(stacks)


if __name__ == "__main__":
    main()
