//! `podroute`: the CNI plugin.

fn main() {}
