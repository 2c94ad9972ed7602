//! UPDATE body decoding with RFC 7606 handling. First byte: bit 0 = 4-octet AS.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podroute_bgp::message::{CodecContext, Message, Update};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let ctx = CodecContext {
        four_octet_as: flags & 1 != 0,
        extended_messages: true,
    };
    if let Ok(update) = Update::decode(body, &ctx) {
        let _ = update.treat_as_withdraw();
        let _ = update.end_of_rib_family();
        let bytes = Message::Update(update).to_bytes(&ctx);
        let _ = Message::decode(&bytes, &ctx);
    }
});
