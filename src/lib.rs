//! frontdoor emulates, on one machine and offline, the part of Google Cloud that decides
//! whether one Cloud Run service may call another.
//!
//! # Architecture
//!
//! ```text
//!               services.yaml ──► config ──► Config (validated, every derived value resolved)
//!                                              │
//!   state dir ──► keys (KeySet: current + next RSA key)
//!                                              │
//!                  tokens (mint / verify, pure)  iam (policies → Decision, pure)
//!                        │                      │
//!   ┌────────────────────┴──────────┬───────────┴────────────┐
//!   google (issuer: discovery,      frontdoor (*.run.app      metadata (per-service
//!   JWKS, PEM certs; decisions)     ingress: auth → proxy)    identity; ID and access
//!                                                             tokens, cached)
//!                                   └► upstream (builtin:echo, http)
//!
//!   access holds the `ya29.` access tokens issued, for the APIs that honour them.
//!   server binds every listener first, then serves them all until shutdown; cli is the
//!   only place that reads the environment, the clock and the terminal.
//! ```
//!
//! Pure modules (`config`, `keys`, `tokens`, `iam`) know nothing of HTTP. Time is passed in
//! through [`clock::Clock`] so tests can fix it.

pub mod access;
pub mod cli;
pub mod clock;
pub mod config;
pub mod decisions;
pub mod frontdoor;
pub mod google;
pub mod iam;
pub mod keys;
pub mod metadata;
pub mod server;
pub mod state;
pub mod tokens;
pub mod upstream;
