//! ROUTE-REFRESH and NOTIFICATION decoding (the two small fixed-layout messages).
#![no_main]

use libfuzzer_sys::fuzz_target;
use podroute_bgp::message::{CodecContext, Message};

fuzz_target!(|data: &[u8]| {
    let Some((&ty, body)) = data.split_first() else {
        return;
    };
    if body.len() > 4096 - 19 {
        return;
    }
    let ty = if ty & 1 == 0 { 5 } else { 3 };
    let mut frame = vec![0xff; 16];
    frame.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    frame.push(ty);
    frame.extend_from_slice(body);
    let ctx = CodecContext::default();
    if let Ok(msg) = Message::decode(&frame, &ctx) {
        assert_eq!(msg.to_bytes(&ctx).as_ref(), frame.as_slice());
    }
});
