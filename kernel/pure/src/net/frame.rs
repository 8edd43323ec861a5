//! Looks into an Ethernet frame just far enough to tell a TCP connection
//! request (RFC 9293: SYN without ACK) and its destination port: the
//! stack drops such a request, instead of letting smoltcp answer it with
//! a reset, while the listener on that port has no room, as Linux drops
//! SYNs when a listen queue is full; the client retransmits.

/// The destination port of the IPv4 TCP SYN (without ACK) in `frame`
/// (Ethernet II, RFC 894; IPv4, RFC 791), if it is one.
pub fn tcp_syn_port(frame: &[u8]) -> Option<u16> {
    const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
    const TCP: u8 = 6;
    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    if frame.get(12..14)? != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = frame.get(14..)?;
    let version_ihl = *ip.first()?;
    let ihl = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != 4 || ihl < 20 || *ip.get(9)? != TCP {
        return None;
    }
    // A fragment other than the first has no TCP header.
    let fragment_offset = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]) & 0x1fff;
    if fragment_offset != 0 {
        return None;
    }
    // A TCP header is at least 20 bytes; a shorter one smoltcp drops.
    let tcp = ip.get(ihl..ihl + 20)?;
    let flags = tcp[13];
    (flags & SYN != 0 && flags & ACK == 0).then(|| u16::from_be_bytes([tcp[2], tcp[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn frame(ethertype: [u8; 2], protocol: u8, flags: u8, port: u16) -> Vec<u8> {
        let mut f = std::vec![0u8; 14];
        f[12..14].copy_from_slice(&ethertype);
        let mut ip = std::vec![0u8; 20];
        ip[0] = 0x45;
        ip[9] = protocol;
        f.extend_from_slice(&ip);
        let mut tcp = std::vec![0u8; 20];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&port.to_be_bytes());
        tcp[13] = flags;
        f.extend_from_slice(&tcp);
        f
    }

    #[test]
    fn syns_are_told_apart() {
        assert_eq!(tcp_syn_port(&frame([8, 0], 6, 0x02, 80)), Some(80));
        assert_eq!(tcp_syn_port(&frame([8, 0], 6, 0x12, 80)), None); // SYN-ACK
        assert_eq!(tcp_syn_port(&frame([8, 0], 6, 0x10, 80)), None); // ACK
        assert_eq!(tcp_syn_port(&frame([8, 0], 17, 0x02, 80)), None); // UDP
        assert_eq!(tcp_syn_port(&frame([0x86, 0xdd], 6, 0x02, 80)), None);
    }

    #[test]
    fn short_and_odd_frames_are_no_syns() {
        let whole = frame([8, 0], 6, 0x02, 8080);
        for len in 0..whole.len() {
            assert_eq!(tcp_syn_port(&whole[..len]), None, "{len} bytes");
        }
        let mut options = frame([8, 0], 6, 0x02, 8080);
        options[14] = 0x46; // IHL 24: the TCP header starts 4 bytes later
        options.splice(34..34, [1u8, 1, 1, 1]);
        assert_eq!(tcp_syn_port(&options), Some(8080));
        let mut fragment = frame([8, 0], 6, 0x02, 80);
        fragment[14 + 7] = 8;
        assert_eq!(tcp_syn_port(&fragment), None);
        let mut bad_ihl = frame([8, 0], 6, 0x02, 80);
        bad_ihl[14] = 0x44;
        assert_eq!(tcp_syn_port(&bad_ihl), None);
    }
}
