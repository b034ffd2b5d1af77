//! Whether a request comes from one of the services frontdoor started itself: SPEC §3's
//! model of "internal" traffic for ingress `internal`. Every process here connects from
//! 127.0.0.1, so the address cannot tell; the kernel can. The caller's socket is found in
//! `/proc/net/tcp` by its two ends, and its owner among the processes in the started
//! services' process groups. Linux only; elsewhere no caller is recognised.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::sync::OnceCell;

use crate::upstream::supervisor::Supervisor;

/// Which started service holds a connection's client end, found at most once per
/// connection (the answer cannot change while the connection is open) and off the
/// runtime's threads: the lookup walks `/proc`, about 10 ms with 80 processes running.
/// The accept loop gives every connection one; a request reaches it through its
/// extensions.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallerProcess(Arc<OnceCell<Option<String>>>);

impl CallerProcess {
    /// A connection known to come from started service `service`: one that reached the
    /// front door through that service's egress proxy.
    pub(crate) fn known(service: String) -> CallerProcess {
        CallerProcess(Arc::new(OnceCell::new_with(Some(Some(service)))))
    }

    /// The started service the client of `peer` is, if any.
    pub(crate) async fn service(&self, supervisor: &Supervisor, peer: super::Peer) -> Option<&str> {
        self.0
            .get_or_init(|| async {
                let groups = supervisor.groups();
                if groups.is_empty() {
                    return None;
                }
                tokio::task::spawn_blocking(move || {
                    started_service(&groups, peer.remote, peer.local)
                })
                .await
                .ok()
                .flatten()
            })
            .await
            .as_deref()
    }
}

/// The service whose process holds the client end of the connection `peer` → `local`.
pub(crate) fn started_service(
    groups: &[(String, u32)],
    peer: SocketAddr,
    local: SocketAddr,
) -> Option<String> {
    if groups.is_empty() || !peer.ip().is_loopback() {
        return None;
    }
    let inode = socket_inode(peer, local)?;
    let wanted = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Some(group) = process_group(pid) else {
            continue;
        };
        let Some((service, _)) = groups.iter().find(|(_, g)| *g == group) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path())
                .is_ok_and(|target| target.as_os_str() == wanted.as_str())
            {
                return Some(service.clone());
            }
        }
    }
    None
}

/// `/proc/PID/stat`'s fifth field, after the parenthesised command name.
fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(2)?.parse().ok()
}

/// The inode of the socket whose local end is `peer` and remote end `local`, from
/// `/proc/net/tcp` (IPv4) or `/proc/net/tcp6`.
fn socket_inode(peer: SocketAddr, local: SocketAddr) -> Option<u64> {
    let (file, from, to) = match (peer.ip(), local.ip()) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (
            "/proc/net/tcp",
            hex_v4(a.octets(), peer.port()),
            hex_v4(b.octets(), local.port()),
        ),
        _ => return None,
    };
    let table = std::fs::read_to_string(file).ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&from.as_str()) && fields.get(2) == Some(&to.as_str()))
            .then(|| fields.get(9)?.parse().ok())
            .flatten()
    })
}

/// An IPv4 end as `/proc/net/tcp` writes it: the address's bytes in host (little-endian)
/// order, then the port, both in upper-case hex.
fn hex_v4(octets: [u8; 4], port: u16) -> String {
    format!("{:08X}:{port:04X}", u32::from_le_bytes(octets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_owns_its_own_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(local).unwrap();
        let peer = client.local_addr().unwrap();
        assert_eq!(hex_v4([127, 0, 0, 1], 8080), "0100007F:1F90");
        assert!(socket_inode(peer, local).is_some());
        let own_group = process_group(std::process::id()).unwrap();
        let groups = vec![("me".to_owned(), own_group)];
        assert_eq!(started_service(&groups, peer, local), Some("me".to_owned()));
        let strangers = vec![("other".to_owned(), u32::MAX)];
        assert_eq!(started_service(&strangers, peer, local), None);
    }
}
