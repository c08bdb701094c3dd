//! natter's network lab: real processes in Linux network namespaces behind real Linux NAT,
//! with userspace link impairment (this kernel has no netem).
//!
//! ```no_run
//! use natter_lab::{Lab, NatKind};
//! use std::time::Duration;
//!
//! if let Err(why) = natter_lab::lab_available() {
//!     eprintln!("SKIPPED: {why}");
//!     return Ok(());
//! }
//! let mut lab = Lab::new("example")?;
//! let (primary, _alternate) = lab.server_ips();
//! let nat = lab.add_nat(NatKind::PortRestrictedCone)?;
//! let client = lab.add_host_behind(&nat)?;
//! let server = lab.server_host().spawn("natter", &["serve", "--turn", &format!("{primary}:3478")])?;
//! let out = client.run("natter", &["probe", &format!("{primary}:3478")], Duration::from_secs(10))?;
//! assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
//! drop(server);
//! # Ok::<(), natter_lab::Error>(())
//! ```
//! Everything (namespaces, processes, impairment threads) is torn down when the [`Lab`]
//! is dropped, also when a test panics. See `docs/lab.md`.

mod cmd;
mod error;
pub mod impair;
mod process;
mod skip;
pub mod testing;
mod topology;

pub use cmd::{impairment_available, lab_available};
pub use error::{Error, Result};
pub use impair::{ImpairedLink, Impairment, LinkStats};
pub use process::LabProcess;
pub use skip::{skip, which};
pub use topology::{Host, Lab, MultiHomedHost, Nat, NatKind};
