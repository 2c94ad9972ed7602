//! BFD Control packet decoding: the input is one UDP payload. Whatever decodes must
//! encode to bytes that decode to the same packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podroute_bfd::packet::ControlPacket;

fuzz_target!(|datagram: &[u8]| {
    if let Ok(packet) = ControlPacket::decode(datagram) {
        assert_eq!(ControlPacket::decode(&packet.encode()), Ok(packet));
    }
});
