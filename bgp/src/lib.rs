//! BGP protocol core for podroute (sans-IO).
