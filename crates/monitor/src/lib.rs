//! banhammer-monitor (in progress).
