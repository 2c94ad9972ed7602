//! `podroute-agent`: the node agent.

fn main() {}
