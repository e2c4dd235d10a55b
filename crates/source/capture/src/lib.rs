//! banhammer-capture (in progress).
