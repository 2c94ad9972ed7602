//! The host-side veth name of an attachment.
//!
//! `pr` + 13 hex digits of a 64-bit FNV-1a hash of `<containerID>/<ifname>`: 15 bytes, the
//! Linux limit (IFNAMSIZ - 1). The name is a pure function of the attachment, so DEL and GC
//! find the veth from the container ID alone, even after the pod's netns is gone. 52 bits of
//! hash make a collision between two pods of one node vanishingly unlikely.

/// Prefix of every podroute host veth (lets an operator spot them in `ip link`).
pub const HOST_VETH_PREFIX: &str = "pr";

/// FNV-1a, 64-bit (offset basis and prime from the FNV specification): tiny, stable across
/// releases and platforms, which `std`'s `DefaultHasher` does not promise.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The host veth name for the attachment `(container_id, ifname)`.
pub fn host_veth_name(container_id: &str, ifname: &str) -> String {
    let hash = fnv1a64(format!("{container_id}/{ifname}").as_bytes());
    // 13 hex digits = the low 52 bits.
    format!("{HOST_VETH_PREFIX}{:013x}", hash & ((1u64 << 52) - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_fits_ifnamsiz_and_is_stable() {
        let n = host_veth_name("0123456789abcdef0123456789abcdef", "eth0");
        assert_eq!(n.len(), 15);
        assert!(n.starts_with("pr"));
        assert!(crate::env::is_valid_ifname(&n));
        assert_eq!(
            n,
            host_veth_name("0123456789abcdef0123456789abcdef", "eth0")
        );
    }

    #[test]
    fn name_depends_on_container_and_interface() {
        let a = host_veth_name("c1", "eth0");
        assert_ne!(a, host_veth_name("c2", "eth0"));
        assert_ne!(a, host_veth_name("c1", "net1"));
    }

    #[test]
    fn thousands_of_pods_do_not_collide() {
        let names: std::collections::HashSet<String> = (0..20_000)
            .map(|i| host_veth_name(&format!("pod-{i}"), "eth0"))
            .collect();
        assert_eq!(names.len(), 20_000);
    }
}
