//! banhammer-testkit: what the workspace's tests share, so that each test says only what it
//! checks.
//!
//! - [`rules`]: thresholds, metrics and rule sets in one line each (`block(3, 60, 600)`,
//!   `metric("login_failed", [...])`, `ruleset([...])`), and `ts(secs)`.
//! - [`script`]: event scripts (`"0 a, 1 a, 2 b login email=x"`) parsed into steps, and
//!   written out as `banhammer eval` reads them.
//! - [`wait`]: bounded waits on an observable condition, with a panic naming what never
//!   happened; tests never sleep for a fixed time and hope.
//! - [`RedisServer`], [`RedisCluster`]: real `redis-server` processes on free loopback ports
//!   (never a shared or pre-started one) and a three-master Redis Cluster built with
//!   `redis-cli --cluster create`, stopped when dropped. A test fails, not skips, when
//!   `redis-server` is missing: CI installs it.
//!
//! Test support only: no production crate depends on it (`scripts/check-architecture`).

mod redis;
pub mod rules;
pub mod script;
pub mod wait;

pub use redis::{free_port, RedisCluster, RedisServer};
