//! What every listener knows of a connection.

use std::net::SocketAddr;

/// Both ends of a connection: the caller's address, and ours (which identifies the
/// connection in the kernel's tables, for recognising frontdoor's own services; and, on
/// the google listener, which address the caller reached). The accept loop
/// (`server::accept`) hands it to every request as `ConnectInfo`.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub remote: SocketAddr,
    pub local: SocketAddr,
}
