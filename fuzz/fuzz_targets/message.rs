//! Framing and decoding of any message. The first byte picks the codec context; the rest
//! is a byte stream cut into frames the way a session does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podroute_bgp::message::{CodecContext, Message, frame_len};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let ctx = CodecContext {
        four_octet_as: flags & 1 != 0,
        extended_messages: flags & 2 != 0,
    };
    while let Ok(Some(len)) = frame_len(rest, ctx.max_message_len()) {
        if let Ok(msg) = Message::decode(&rest[..len], &ctx) {
            // Whatever decodes must encode and decode again to the same value.
            let again = Message::decode(&msg.to_bytes(&ctx), &ctx);
            if let (Message::Update(a), Ok(Message::Update(b))) = (&msg, &again) {
                // Faults are not encoded; compare what is.
                assert_eq!(a.withdrawn, b.withdrawn);
                assert_eq!(a.nlri, b.nlri);
            }
        }
        rest = &rest[len..];
    }
});
