//! Socket options the standard library does not wrap: TCP-MD5 (RFC 2385), GTSM (RFC 5082),
//! and for the route programmer's netlink sockets a forced receive buffer and a packet filter.
//!
//! One of the agent's two modules with `unsafe` (the other is [`crate::malloc`]): each call is
//! one `setsockopt(2)` on a socket the caller owns, with a value whose layout matches the
//! kernel's.

#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd};

/// `TCP_MD5SIG_MAXKEYLEN` from `<linux/tcp.h>`.
pub const MD5_MAX_KEY_LEN: usize = 80;

/// `struct tcp_md5sig` from `<linux/tcp.h>` (the `libc` crate does not define it).
#[repr(C)]
struct TcpMd5Sig {
    tcpm_addr: libc::sockaddr_storage,
    tcpm_flags: u8,
    tcpm_prefixlen: u8,
    tcpm_keylen: u16,
    tcpm_ifindex: libc::c_int,
    tcpm_key: [u8; MD5_MAX_KEY_LEN],
}

/// Sets (or, with an empty key, removes) the TCP-MD5 key for segments to and from `peer` on
/// `socket` (RFC 2385 §2). On a listening socket it applies to connections accepted from
/// `peer`; on a connecting socket it must be set before `connect`.
pub fn set_tcp_md5(socket: BorrowedFd<'_>, peer: IpAddr, key: &[u8]) -> io::Result<()> {
    if key.len() > MD5_MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "TCP-MD5 key longer than 80 bytes",
        ));
    }
    // SAFETY: sockaddr_storage and the integer/byte fields are plain data for which all-zero
    // bytes are a valid value.
    let mut sig: TcpMd5Sig = unsafe { std::mem::zeroed() };
    write_sockaddr(&mut sig.tcpm_addr, SocketAddr::new(peer, 0));
    sig.tcpm_keylen = key.len() as u16; // at most 80, checked above
    sig.tcpm_key[..key.len()].copy_from_slice(key);
    setsockopt(socket, libc::IPPROTO_TCP, libc::TCP_MD5SIG, &sig)
}

/// Enables GTSM (RFC 5082 §3): send with TTL (hop limit) 255 and drop received packets whose
/// TTL is below 255, i.e. that did not come from a directly connected neighbour.
pub fn set_gtsm(socket: BorrowedFd<'_>, ipv6: bool) -> io::Result<()> {
    set_ttl_255(socket, ipv6)?;
    let max: libc::c_int = 255;
    if ipv6 {
        setsockopt(socket, libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT, &max)
    } else {
        setsockopt(socket, libc::IPPROTO_IP, libc::IP_MINTTL, &max)
    }
}

/// Keeps the SYN of every connection `listener` accepts (`TCP_SAVE_SYN`), for
/// [`saved_syn_hop_limit`].
pub fn set_save_syn(listener: BorrowedFd<'_>) -> io::Result<()> {
    let on: libc::c_int = 1;
    setsockopt(listener, libc::IPPROTO_TCP, libc::TCP_SAVE_SYN, &on)
}

/// The TTL (IPv4) or hop limit (IPv6) the SYN of an accepted connection arrived with, from
/// the SYN its listener saved ([`set_save_syn`]); `None` when none was saved (or it was read
/// already: the kernel hands it out once). The minimum-TTL check of GTSM can only be set on
/// an accepted socket after the handshake, when the peer's first segments may be queued
/// already; the SYN's TTL tells whether the connection came from a neighbour at all.
pub fn saved_syn_hop_limit(stream: BorrowedFd<'_>) -> Option<u8> {
    let mut headers = [0u8; 512];
    let mut len = headers.len() as libc::socklen_t; // 512 fits
    // SAFETY: `stream` is a valid open descriptor for the duration of the borrow; the kernel
    // writes at most `len` bytes into `headers` and stores the length it wrote in `len`.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_SAVED_SYN,
            headers.as_mut_ptr().cast::<libc::c_void>(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    let headers = headers.get(..usize::try_from(len).ok()?)?;
    // The network header first: IPv4's TTL is byte 8, IPv6's hop limit byte 7.
    match headers.first()? >> 4 {
        4 => headers.get(8).copied(),
        6 => headers.get(7).copied(),
        _ => None,
    }
}

/// Sends with TTL (hop limit) 255. Set on the listening socket, so that the SYN-ACK to a GTSM
/// peer already carries TTL 255: the peer's minimum-TTL check applies to it too.
pub fn set_ttl_255(socket: BorrowedFd<'_>, ipv6: bool) -> io::Result<()> {
    let max: libc::c_int = 255;
    if ipv6 {
        setsockopt(socket, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &max)
    } else {
        setsockopt(socket, libc::IPPROTO_IP, libc::IP_TTL, &max)
    }
}

/// Sets the socket's receive buffer to `bytes`: beyond `net.core.rmem_max` with
/// `SO_RCVBUFFORCE` when the process may (CAP_NET_ADMIN, which writing routes needs anyway),
/// else as far as `SO_RCVBUF` allows.
pub fn set_receive_buffer(socket: BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    let size = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    setsockopt(socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &size)
        .or_else(|_| setsockopt(socket, libc::SOL_SOCKET, libc::SO_RCVBUF, &size))
}

/// Makes the kernel drop, before queueing them on `socket`, the netlink messages whose
/// `nlmsg_pid` is `port`: notifications caused by requests of the netlink socket bound to
/// `port`. The route programmer's notification socket so never hears of its own writes,
/// however many it makes. A classic BPF program on the message header (see
/// `Documentation/networking/filter.rst`).
pub fn drop_netlink_messages_of(socket: BorrowedFd<'_>, port: u32) -> io::Result<()> {
    /// `nlmsg_pid`'s offset in `struct nlmsghdr`.
    const NLMSG_PID: u32 = 12;
    let op = |code: u32| code as u16;
    let program = [
        // A = nlmsg_pid. Absolute loads read network byte order; the header is in host order.
        libc::sock_filter {
            code: op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS),
            jt: 0,
            jf: 0,
            k: NLMSG_PID,
        },
        libc::sock_filter {
            code: op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K),
            jt: 0,
            jf: 1,
            k: u32::from_be_bytes(port.to_ne_bytes()),
        },
        // Ours: drop.
        libc::sock_filter {
            code: op(libc::BPF_RET | libc::BPF_K),
            jt: 0,
            jf: 0,
            k: 0,
        },
        // Anyone else's: keep the whole message.
        libc::sock_filter {
            code: op(libc::BPF_RET | libc::BPF_K),
            jt: 0,
            jf: 0,
            k: u32::MAX,
        },
    ];
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        // The kernel copies the program during the call and never writes through this.
        filter: program.as_ptr().cast_mut(),
    };
    setsockopt(socket, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
}

fn write_sockaddr(storage: &mut libc::sockaddr_storage, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in
            // (that is its purpose); the write stays in bounds.
            unsafe {
                std::ptr::write(std::ptr::from_mut(storage).cast::<libc::sockaddr_in>(), sin)
            };
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe {
                std::ptr::write(
                    std::ptr::from_mut(storage).cast::<libc::sockaddr_in6>(),
                    sin6,
                )
            };
        }
    }
}

fn setsockopt<T>(
    socket: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `socket` is a valid open descriptor for the duration of the borrow; `value`
    // points to a live, initialised `T` and the length passed is exactly its size, which is
    // what the kernel reads for these options. A pointer inside `T` (`sock_fprog::filter`)
    // points to memory the caller keeps alive across this call, and the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(value).cast::<libc::c_void>(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn md5_key_is_accepted_by_the_kernel_and_too_long_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        set_tcp_md5(
            listener.as_fd(),
            "127.0.0.2".parse().expect("ip"),
            b"secret",
        )
        .expect("md5");
        set_tcp_md5(listener.as_fd(), "127.0.0.2".parse().expect("ip"), b"").expect("remove md5");
        let err = set_tcp_md5(
            listener.as_fd(),
            "127.0.0.2".parse().expect("ip"),
            &[b'x'; 81],
        );
        assert!(err.is_err());
    }

    #[test]
    fn the_saved_syn_tells_the_ttl_a_connection_came_with() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        set_save_syn(listener.as_fd()).expect("save syn");
        let address = listener.local_addr().expect("address");
        for ttl in [255, 64, 1] {
            let client = connect_with_ttl(address, ttl);
            let (accepted, _) = listener.accept().expect("accept");
            assert_eq!(saved_syn_hop_limit(accepted.as_fd()), Some(ttl as u8));
            assert_eq!(
                saved_syn_hop_limit(accepted.as_fd()),
                None,
                "handed out once"
            );
            drop(client);
        }
        // A listener that saves no SYN: nothing to tell.
        let plain = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let _client = connect_with_ttl(plain.local_addr().expect("address"), 255);
        let (accepted, _) = plain.accept().expect("accept");
        assert_eq!(saved_syn_hop_limit(accepted.as_fd()), None);
    }

    /// A connection to `address` whose SYN carries `ttl`.
    fn connect_with_ttl(address: SocketAddr, ttl: u32) -> std::net::TcpStream {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            let value = libc::c_int::try_from(ttl).expect("ttl");
            setsockopt(socket.as_fd(), libc::IPPROTO_IP, libc::IP_TTL, &value).expect("ttl");
            let stream = socket.connect(address).await.expect("connect");
            stream.into_std().expect("std stream")
        })
    }

    #[test]
    fn gtsm_sets_ttl_255() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        set_gtsm(listener.as_fd(), false).expect("gtsm");
        assert_eq!(listener.ttl().expect("ttl"), 255);
    }
}
