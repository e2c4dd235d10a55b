//! Benchmarks of `Engine::incr` (placeholder until the suite lands).
fn main() {}
