//! Connection limits: a cap on all open connections and an optional cap per client
//! address, so that one client opening sockets it never uses cannot lock everyone
//! else out until the handshake timeout sheds them.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `max_connections` are open.
    Total,
    /// `max_connections_per_ip` are open from this address.
    PerIp,
}

impl Refused {
    /// The `reason` label of `vswa_rejected_total`.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refused::Total => "max_connections",
            Refused::PerIp => "max_connections_per_ip",
        }
    }
}

type OpenPerIp = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// The relay's connection limits.
#[derive(Debug)]
pub(crate) struct ConnectionLimits {
    total: Arc<Semaphore>,
    per_ip: usize,
    open: OpenPerIp,
}

/// One connection's share of the limits, released when dropped (held by the
/// connection task and by any WebSocket session it turns into).
#[derive(Debug)]
pub(crate) struct ConnPermit {
    _total: OwnedSemaphorePermit,
    ip: Option<(OpenPerIp, IpAddr)>,
}

impl ConnectionLimits {
    /// At most `total` connections, and at most `per_ip` from one address (0: no
    /// per-address limit).
    pub(crate) fn new(total: usize, per_ip: usize) -> ConnectionLimits {
        ConnectionLimits {
            total: Arc::new(Semaphore::new(total)),
            per_ip,
            open: OpenPerIp::default(),
        }
    }

    /// Takes a share for a connection from `ip`, or says which limit is reached.
    pub(crate) fn try_acquire(&self, ip: IpAddr) -> Result<ConnPermit, Refused> {
        let ip = client_key(ip);
        let counted = if self.per_ip > 0 {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            let n = open.entry(ip).or_insert(0);
            if *n >= self.per_ip {
                return Err(Refused::PerIp);
            }
            *n += 1;
            Some((self.open.clone(), ip))
        } else {
            None
        };
        match self.total.clone().try_acquire_owned() {
            Ok(total) => Ok(ConnPermit {
                _total: total,
                ip: counted,
            }),
            Err(_) => {
                if let Some((open, ip)) = counted {
                    release(&open, ip);
                }
                Err(Refused::Total)
            }
        }
    }
}

/// The address a client is counted under: IPv4 addresses as they are (also when a
/// dual-stack socket shows them as `::ffff:a.b.c.d`), IPv6 addresses by their /64
/// network, since one client usually holds a whole /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

fn release(open: &OpenPerIp, ip: IpAddr) {
    let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = open.get_mut(&ip) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            open.remove(&ip);
        }
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        if let Some((open, ip)) = self.ip.take() {
            release(&open, ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_address_limit_leaves_room_for_others() {
        let limits = ConnectionLimits::new(10, 2);
        let a1 = limits.try_acquire(ip("10.0.0.1")).unwrap();
        let _a2 = limits.try_acquire(ip("10.0.0.1")).unwrap();
        assert_eq!(
            limits.try_acquire(ip("10.0.0.1")).unwrap_err(),
            Refused::PerIp
        );
        // The same client over IPv6-mapped IPv4 counts as the same address.
        assert_eq!(
            limits.try_acquire(ip("::ffff:10.0.0.1")).unwrap_err(),
            Refused::PerIp
        );
        let _b = limits.try_acquire(ip("10.0.0.2")).unwrap();
        drop(a1);
        let _a3 = limits.try_acquire(ip("10.0.0.1")).unwrap();
    }

    #[test]
    fn total_limit_holds_and_does_not_leak_per_address_counts() {
        let limits = ConnectionLimits::new(2, 5);
        let a = limits.try_acquire(ip("10.0.0.1")).unwrap();
        let _b = limits.try_acquire(ip("10.0.0.2")).unwrap();
        for _ in 0..10 {
            assert_eq!(
                limits.try_acquire(ip("10.0.0.3")).unwrap_err(),
                Refused::Total
            );
        }
        assert!(!limits.open.lock().unwrap().contains_key(&ip("10.0.0.3")));
        drop(a);
        let _c = limits.try_acquire(ip("10.0.0.3")).unwrap();
        assert_eq!(limits.open.lock().unwrap().len(), 2);
    }

    #[test]
    fn ipv6_clients_count_per_64_network() {
        let limits = ConnectionLimits::new(10, 1);
        let _a = limits.try_acquire(ip("2001:db8:1:2::1")).unwrap();
        assert_eq!(
            limits.try_acquire(ip("2001:db8:1:2:ffff::9")).unwrap_err(),
            Refused::PerIp,
            "same /64"
        );
        let _b = limits.try_acquire(ip("2001:db8:1:3::1")).unwrap();
    }

    #[test]
    fn zero_means_no_per_address_limit() {
        let limits = ConnectionLimits::new(100, 0);
        let permits: Vec<_> = (0..100)
            .map(|_| limits.try_acquire(ip("::1")).unwrap())
            .collect();
        assert_eq!(permits.len(), 100);
        assert!(limits.open.lock().unwrap().is_empty());
    }
}
