//! The BFD cost benchmark on 999 sessions for a few simulated seconds, so `make test`
//! notices when it breaks. It asserts that the sessions stay Up and the numbers come out,
//! not how fast anything is.

#[test]
fn nine_hundred_ninety_nine_sessions_are_measured() {
    let cost = podroute_bench::bfd::run(999, 3);
    assert_eq!(cost.up, 999);
    assert_eq!(cost.detections, 0);
    // 999 sessions at 300 ms (jittered to 225–300 ms) over 3 s: some 10–13 packets each way
    // per session.
    assert!(cost.packets_sent >= 999 * 9, "{cost:?}");
    assert!(cost.packets_received >= 999 * 9, "{cost:?}");
    assert!(cost.hub_cpu_us > 0, "{cost:?}");
}
