use super::*;
use proptest::prelude::*;

/// An Up packet as a peer sends it once the session is established.
fn up_packet() -> ControlPacket {
    ControlPacket {
        diag: Diag::NONE,
        state: State::Up,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discr: 0x0102_0304,
        your_discr: 0x0a0b_0c0d,
        desired_min_tx: 300_000,
        required_min_rx: 300_000,
        required_min_echo_rx: 0,
    }
}

#[test]
fn encodes_the_rfc_layout() {
    let bytes = up_packet().encode();
    assert_eq!(
        bytes,
        [
            0x20, 0xc0, 3, 24, 1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d, 0x00, 0x04, 0x93, 0xe0, 0x00,
            0x04, 0x93, 0xe0, 0, 0, 0, 0
        ]
    );
    assert_eq!(ControlPacket::decode(&bytes), Ok(up_packet()));
}

#[test]
fn flags_and_diag_round_trip() {
    let p = ControlPacket {
        diag: Diag::CONTROL_DETECTION_TIME_EXPIRED,
        state: State::Down,
        poll: true,
        final_: true,
        control_plane_independent: true,
        demand: true,
        your_discr: 0,
        ..up_packet()
    };
    let bytes = p.encode();
    assert_eq!(bytes[0], 0x21);
    assert_eq!(bytes[1], 0x40 | 0x20 | 0x10 | 0x08 | 0x02);
    assert_eq!(ControlPacket::decode(&bytes), Ok(p));
}

#[test]
fn bytes_past_length_are_ignored() {
    let mut bytes = up_packet().encode().to_vec();
    bytes.extend_from_slice(&[0xde, 0xad]);
    assert_eq!(ControlPacket::decode(&bytes), Ok(up_packet()));
}

fn with(edit: impl FnOnce(&mut [u8; PACKET_LEN])) -> [u8; PACKET_LEN] {
    let mut bytes = up_packet().encode();
    edit(&mut bytes);
    bytes
}

#[test]
fn refuses_what_rfc_5880_6_8_6_discards() {
    let cases: Vec<([u8; PACKET_LEN], DecodeError)> = vec![
        (with(|b| b[0] = 0x40), DecodeError::Version(2)),
        (with(|b| b[0] = 0x00), DecodeError::Version(0)),
        (with(|b| b[3] = 23), DecodeError::LengthTooShort(23)),
        (
            with(|b| b[3] = 48),
            DecodeError::LengthBeyondDatagram {
                length: 48,
                datagram: 24,
            },
        ),
        (with(|b| b[2] = 0), DecodeError::DetectMultZero),
        (with(|b| b[1] |= BIT_MULTIPOINT), DecodeError::Multipoint),
        (with(|b| b[4..8].fill(0)), DecodeError::MyDiscriminatorZero),
        (
            with(|b| b[8..12].fill(0)),
            DecodeError::YourDiscriminatorZero(State::Up),
        ),
        (
            with(|b| {
                b[1] = 0x80;
                b[8..12].fill(0);
            }),
            DecodeError::YourDiscriminatorZero(State::Init),
        ),
        // The A bit with Length 24 has no room for the auth section.
        (with(|b| b[1] |= BIT_AUTH), DecodeError::LengthTooShort(24)),
    ];
    for (bytes, want) in cases {
        assert_eq!(ControlPacket::decode(&bytes), Err(want), "{bytes:02x?}");
    }
}

#[test]
fn authentication_is_refused_while_off() {
    // Simple Password (type 1), Auth Len 5, key id 1, password "ab" (RFC 5880 §4.2).
    let mut bytes = up_packet().encode().to_vec();
    bytes[1] |= BIT_AUTH;
    bytes[3] = 29;
    bytes.extend_from_slice(&[1, 5, 1, b'a', b'b']);
    assert_eq!(
        ControlPacket::decode(&bytes),
        Err(DecodeError::AuthenticationNotInUse)
    );
}

#[test]
fn down_packets_may_leave_your_discriminator_zero() {
    for state in [State::Down, State::AdminDown] {
        let p = ControlPacket {
            state,
            your_discr: 0,
            ..up_packet()
        };
        assert_eq!(ControlPacket::decode(&p.encode()), Ok(p));
    }
}

#[test]
fn short_datagrams_are_refused() {
    assert_eq!(ControlPacket::decode(&[]), Err(DecodeError::Truncated(0)));
    assert_eq!(
        ControlPacket::decode(&up_packet().encode()[..23]),
        Err(DecodeError::Truncated(23))
    );
    assert_eq!(ControlPacket::decode(&[0x40]), Err(DecodeError::Version(2)));
}

proptest! {
    #[test]
    fn decode_never_panics_and_what_decodes_re_encodes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(p) = ControlPacket::decode(&bytes) {
            prop_assert_eq!(ControlPacket::decode(&p.encode()), Ok(p));
            prop_assert_eq!(&p.encode()[4..], &bytes[4..24]);
        }
    }
}

/// Hex to bytes, for golden vectors.
fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn golden_bird_2_down_packets_decode_and_re_encode() {
    // Captured from BIRD 2.0.12 (`protocol bfd`, min rx/tx 100 ms, multiplier 3, a static
    // `neighbor`) by agent/tests/bfd_interop.rs: its first packets to an IPv4 and an IPv6
    // peer, before the peer answered. Down, no diag, Your Discriminator 0, the one-second
    // transmit interval of §6.8.3 while not Up, the configured 100 ms receive interval.
    for (golden, discr) in [
        (
            "2040031865924b8a00000000000f4240000186a000000000",
            0x6592_4b8a,
        ),
        (
            "20400318766e002400000000000f4240000186a000000000",
            0x766e_0024,
        ),
    ] {
        let bytes = hex(golden);
        let packet = ControlPacket::decode(&bytes).expect("BIRD's packet decodes");
        assert_eq!(
            packet,
            ControlPacket {
                diag: Diag::NONE,
                state: State::Down,
                poll: false,
                final_: false,
                control_plane_independent: false,
                demand: false,
                detect_mult: 3,
                my_discr: discr,
                your_discr: 0,
                desired_min_tx: 1_000_000,
                required_min_rx: 100_000,
                required_min_echo_rx: 0,
            }
        );
        assert_eq!(packet.encode().as_slice(), bytes.as_slice());
    }
}

#[test]
fn golden_frr_bfdd_down_packets_decode_and_re_encode() {
    // Captured from FRR bfdd (with zebra; `peer ... local-address`, receive/transmit
    // interval 100, detect-multiplier 3) by agent/tests/bfd_interop.rs, IPv4 then IPv6:
    // Down, the one-second rate both ways while not Up, and unlike BIRD a Required Min
    // Echo RX of 50 ms (FRR offers to take Echo packets; we send none, §6.8.9).
    for (golden, discr) in [
        (
            "20400318cc21558000000000000f4240000f42400000c350",
            0xcc21_5580,
        ),
        (
            "20400318458f8ae100000000000f4240000f42400000c350",
            0x458f_8ae1,
        ),
    ] {
        let bytes = hex(golden);
        let packet = ControlPacket::decode(&bytes).expect("FRR's packet decodes");
        assert_eq!(
            packet,
            ControlPacket {
                diag: Diag::NONE,
                state: State::Down,
                poll: false,
                final_: false,
                control_plane_independent: false,
                demand: false,
                detect_mult: 3,
                my_discr: discr,
                your_discr: 0,
                desired_min_tx: 1_000_000,
                required_min_rx: 1_000_000,
                required_min_echo_rx: 50_000,
            }
        );
        assert_eq!(packet.encode().as_slice(), bytes.as_slice());
    }
}
