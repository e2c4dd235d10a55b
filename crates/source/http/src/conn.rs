//! Open connections and their limits: a cap on all of them, a cap per peer, and an idle
//! timeout. A connection is idle while no request is under way on it (from accept to its
//! first complete request head, and between answers on a kept-alive connection). At the cap,
//! the connection idle the longest is closed to make room, so that sockets that send nothing
//! cannot keep new clients out.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use ipnet::IpNet;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Why connections were closed or refused, counted for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct ConnStats {
    /// Connections open now.
    pub(crate) open: AtomicU64,
    /// Closed after the idle timeout.
    pub(crate) idle_closed: AtomicU64,
    /// Closed, idle, to make room for a new one at the cap.
    pub(crate) evicted: AtomicU64,
    /// Closed at once: their peer already had its share open.
    pub(crate) peer_refused: AtomicU64,
    /// Closed at once: the cap was reached and every connection had a request under way.
    pub(crate) full_refused: AtomicU64,
}

/// The limits, from `[serve]`.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
    pub(crate) per_peer: usize,
    pub(crate) idle_timeout: Duration,
    /// Peers exempt from the per-peer cap: the trusted proxies, through which many clients
    /// come.
    pub(crate) exempt: Vec<IpNet>,
}

/// Why a new connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Its peer has `per_peer` open already.
    PeerLimit,
    /// The cap is reached and no connection is idle.
    Full,
}

/// Every open connection, shared by the accept loop and the connection tasks.
#[derive(Debug)]
pub(crate) struct Registry {
    limits: Limits,
    /// A std mutex: held for a few map operations, never across an await.
    inner: Mutex<Inner>,
    /// Signalled when a connection closes or becomes idle (the accept loop may wait for one).
    room: Notify,
    stats: Arc<ConnStats>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    conns: HashMap<u64, Conn>,
    /// The idle connections by the time they became idle: the first is the one to evict.
    idle: BTreeSet<(Instant, u64)>,
    /// Open connections per peer key.
    peers: HashMap<IpAddr, usize>,
}

#[derive(Debug)]
struct Conn {
    peer: IpAddr,
    /// Requests under way (more than one on HTTP/2).
    in_flight: usize,
    /// When it last became idle (accept, or the end of its last answer).
    idle_since: Instant,
    /// Wakes the connection's task to look again: evicted, or idle from now.
    poke: Arc<Notify>,
}

/// The address a peer is counted under: itself, or its /64 for IPv6 (one subscriber's
/// allocation, so that one client cannot take a fresh address per connection).
pub(crate) fn peer_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 @ IpAddr::V4(_) => v4,
    }
}

impl Registry {
    pub(crate) fn new(limits: Limits, stats: Arc<ConnStats>) -> Arc<Self> {
        Arc::new(Registry {
            limits,
            inner: Mutex::new(Inner::default()),
            room: Notify::new(),
            stats,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The lock guards plain maps updated in one step each: a panic elsewhere cannot
        // leave them half-changed, so a poisoned lock is still good.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until a connection can be admitted: below the cap, or some connection idle
    /// (to be closed for it). While every slot has a request under way, new clients wait
    /// in the kernel's accept queue.
    pub(crate) async fn room(&self) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            // Registered before the check, so a signal between the two is not lost.
            notified.as_mut().enable();
            {
                let inner = self.lock();
                if inner.conns.len() < self.limits.max_connections || !inner.idle.is_empty() {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Admits a connection from `peer`: refused past its peer's share; at the cap, the
    /// connection idle the longest is closed to make room.
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Ticket, Refused> {
        let key = peer_key(peer);
        let exempt = crate::client_ip::is_trusted(&self.limits.exempt, peer);
        let now = Instant::now();
        let mut inner = self.lock();
        if !exempt && inner.peers.get(&key).copied().unwrap_or(0) >= self.limits.per_peer {
            self.stats.peer_refused.fetch_add(1, Ordering::Relaxed);
            return Err(Refused::PeerLimit);
        }
        if inner.conns.len() >= self.limits.max_connections {
            if !self.evict_oldest(&mut inner) {
                self.stats.full_refused.fetch_add(1, Ordering::Relaxed);
                return Err(Refused::Full);
            }
            self.stats.evicted.fetch_add(1, Ordering::Relaxed);
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let poke = Arc::new(Notify::new());
        inner.conns.insert(
            id,
            Conn {
                peer: key,
                in_flight: 0,
                idle_since: now,
                poke: Arc::clone(&poke),
            },
        );
        inner.idle.insert((now, id));
        *inner.peers.entry(key).or_insert(0) += 1;
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        Ok(Ticket {
            id,
            registry: Arc::clone(self),
            poke,
        })
    }

    /// Closes the connection idle the longest, if any is idle (out of file descriptors, a
    /// slot for a new client). Returns whether one was.
    pub(crate) fn evict_one(&self) -> bool {
        let evicted = self.evict_oldest(&mut self.lock());
        if evicted {
            self.stats.evicted.fetch_add(1, Ordering::Relaxed);
        }
        evicted
    }

    fn evict_oldest(&self, inner: &mut Inner) -> bool {
        let Some(&(_, id)) = inner.idle.first() else {
            return false;
        };
        if let Some(conn) = self.remove(inner, id) {
            // A stored permit: the task closes the connection even if it is not waiting yet.
            conn.poke.notify_one();
        }
        true
    }

    fn remove(&self, inner: &mut Inner, id: u64) -> Option<Conn> {
        let conn = inner.conns.remove(&id)?;
        inner.idle.remove(&(conn.idle_since, id));
        if let Some(n) = inner.peers.get_mut(&conn.peer) {
            *n -= 1;
            if *n == 0 {
                inner.peers.remove(&conn.peer);
            }
        }
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
        self.room.notify_one();
        Some(conn)
    }
}

/// One admitted connection's place in the registry; leaving it frees the place.
#[derive(Debug)]
pub(crate) struct Ticket {
    id: u64,
    registry: Arc<Registry>,
    poke: Arc<Notify>,
}

/// Where a connection stands, for its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// Closed by the registry to make room.
    Evicted,
    /// A request is under way.
    Busy,
    /// Idle; to be closed at this time.
    IdleUntil(Instant),
}

impl Ticket {
    /// Resolves when the connection's standing may have changed (evicted, or idle again).
    pub(crate) async fn poked(&self) {
        self.poke.notified().await;
    }

    /// Where the connection stands now.
    pub(crate) fn standing(&self) -> Standing {
        let inner = self.registry.lock();
        match inner.conns.get(&self.id) {
            None => Standing::Evicted,
            Some(c) if c.in_flight > 0 => Standing::Busy,
            Some(c) => Standing::IdleUntil(c.idle_since + self.registry.limits.idle_timeout),
        }
    }

    /// Counts a connection closed for its idle time.
    pub(crate) fn count_idle_close(&self) {
        self.registry
            .stats
            .idle_closed
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Marks a request under way until the returned guard is dropped (with the answer's
    /// body, once it is sent).
    pub(crate) fn busy(&self) -> Busy {
        let mut inner = self.registry.lock();
        let inner = &mut *inner;
        if let Some(conn) = inner.conns.get_mut(&self.id) {
            if conn.in_flight == 0 {
                inner.idle.remove(&(conn.idle_since, self.id));
            }
            conn.in_flight += 1;
        }
        Busy {
            id: self.id,
            registry: Arc::clone(&self.registry),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut inner = self.registry.lock();
        self.registry.remove(&mut inner, self.id);
    }
}

/// A request under way on a connection; dropped when its answer has been sent (or dropped).
#[derive(Debug)]
pub(crate) struct Busy {
    id: u64,
    registry: Arc<Registry>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut inner = self.registry.lock();
        let inner = &mut *inner;
        if let Some(conn) = inner.conns.get_mut(&self.id) {
            conn.in_flight = conn.in_flight.saturating_sub(1);
            if conn.in_flight == 0 {
                conn.idle_since = Instant::now();
                inner.idle.insert((conn.idle_since, self.id));
                // The task re-arms its idle timer; the accept loop may now evict it.
                conn.poke.notify_one();
                self.registry.room.notify_one();
            }
        }
    }
}

/// An answer's body that holds its request's [`Busy`] guard until hyper is done with it.
#[derive(Debug)]
pub(crate) struct BusyBody {
    inner: Body,
    _busy: Busy,
}

impl BusyBody {
    pub(crate) fn new(inner: Body, busy: Busy) -> Self {
        BusyBody { inner, _busy: busy }
    }
}

impl HttpBody for BusyBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    // Forwarded so that hyper still knows the length (Content-Length, not chunked).
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(max: usize, per_peer: usize) -> Arc<Registry> {
        Registry::new(
            Limits {
                max_connections: max,
                per_peer,
                idle_timeout: Duration::from_secs(10),
                exempt: vec!["10.0.0.0/8".parse().unwrap()],
            },
            Arc::new(ConnStats::default()),
        )
    }

    #[test]
    fn ipv6_peers_count_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(peer_key(a), peer_key(b));
        assert_eq!(peer_key(a).to_string(), "2001:db8:1:2::");
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(peer_key(mapped).to_string(), "192.0.2.1");
    }

    #[tokio::test]
    async fn the_cap_closes_the_longest_idle_never_a_busy_one() {
        let r = registry(2, 10);
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        let first = r.admit(peer).unwrap();
        let busy = first.busy();
        let second = r.admit(peer).unwrap();
        let third = r.admit(peer).unwrap();
        assert_eq!(second.standing(), Standing::Evicted, "the idle one");
        tokio::time::timeout(Duration::from_secs(1), second.poked())
            .await
            .expect("and told so");
        assert_eq!(first.standing(), Standing::Busy, "kept");
        let _busy_third = third.busy();
        assert_eq!(r.admit(peer).unwrap_err(), Refused::Full, "all busy");
        drop(busy);
        assert!(
            matches!(first.standing(), Standing::IdleUntil(_)),
            "idle again"
        );
        assert!(r.admit(peer).is_ok(), "the idle one makes room");
        assert_eq!(r.stats.evicted.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_peer_gets_its_share_and_trusted_proxies_are_exempt() {
        let r = registry(100, 2);
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        let proxy: IpAddr = "10.1.1.1".parse().unwrap();
        let kept: Vec<Ticket> = (0..2).map(|_| r.admit(peer).unwrap()).collect();
        assert_eq!(r.admit(peer).unwrap_err(), Refused::PeerLimit);
        let proxied: Vec<Ticket> = (0..5).map(|_| r.admit(proxy).unwrap()).collect();
        drop(kept);
        assert!(r.admit(peer).is_ok(), "closed ones give their share back");
        assert_eq!(r.stats.open.load(Ordering::Relaxed), 5);
        drop(proxied);
    }
}
