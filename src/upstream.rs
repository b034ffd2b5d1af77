//! What the front door proxies to besides a plain HTTP address: the in-process
//! `builtin:echo`, and processes frontdoor starts and supervises itself (`command`).

mod echo;
pub mod supervisor;

pub(crate) use echo::echo;
pub use supervisor::{Output, Supervisor};
