//! OPEN decoding: the input is an OPEN body; the header is added here.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podroute_bgp::message::{CodecContext, Message};

fuzz_target!(|body: &[u8]| {
    if body.len() > 4096 - 19 {
        return;
    }
    let mut frame = vec![0xff; 16];
    frame.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    frame.push(1);
    frame.extend_from_slice(body);
    let ctx = CodecContext::default();
    if let Ok(Message::Open(open)) = Message::decode(&frame, &ctx) {
        let again = Message::decode(&Message::Open(open.clone()).to_bytes(&ctx), &ctx);
        assert_eq!(again, Ok(Message::Open(open)));
    }
});
