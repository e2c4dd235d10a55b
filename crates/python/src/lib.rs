//! The `banhammer` Python module: the seed's `BanHammer` API on the Rust core.
//!
//! `BanHammer(bans, return_rates=False)` reads the seed's `bans` dict into a core `Ruleset`
//! (`config`), runs a `SharedEngine` with the GIL released (`hammer`), and calls the
//! thresholds' Python callables after the engine has answered (`actions`). Time comes from
//! the system clock, a `ManualClock` or any callable (`clock`). See docs/python.md.

mod actions;
mod clock;
mod config;
mod hammer;

use pyo3::prelude::*;

/// The `banhammer` extension module.
#[pymodule]
#[pyo3(name = "banhammer")]
fn banhammer_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<hammer::BanHammer>()?;
    m.add_class::<clock::ManualClock>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
