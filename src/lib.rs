//! frontdoor emulates, on one machine and offline, the part of Google Cloud that decides
//! whether one Cloud Run service may call another.
//!
//! # Architecture
//!
//! ```text
//!   services.yaml ──► config ──► Config (validated, every derived value resolved)
//!   state dir ──────► keys ────► KeySet (current + next RSA key), account keys,
//!                                SystemKeys (each account's own key, for signJwt/signBlob)
//!
//!   pure:  tokens (mint / verify; the verified and minted token caches)
//!          iam (policies → Outcome)   routing (host → service, per generation)
//!
//!   state: AppState = one generation (Config, routing, revisions) + what outlives it
//!          (keys, decision log, issued tokens, caches, the supervisor, the reload
//!          status); Live swaps generations on reload, and every request reads the one in
//!          force. state imports none of the HTTP modules below it.
//!
//!   listeners (server binds them all first, then serves each through server::accept,
//!   its limits on time, headers and connections; server::reload watches the file):
//!     frontdoor  *.run.app ingress: auth (the order of checks) → proxy → upstream
//!                (http, builtin:echo, or a command the upstream::supervisor runs)
//!     metadata   one per service: its identity, ID and access tokens (cached)
//!     google     issuer keys (and each account's own), /token, tokeninfo, IAM
//!                Credentials, STS; and introspect: frontdoor's own decisions, status,
//!                /healthz, /metrics
//!   every surface's decision goes to one decisions::DecisionLog, with its reason, and
//!   to stderr through logging (a compact line, or JSON).
//!
//!   cli is the only place that reads the environment, the clock and the terminal;
//!   cli::locate finds the running server for the commands that ask it.
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
pub mod introspect;
pub mod keys;
pub mod logging;
pub mod metadata;
pub mod peer;
pub mod routing;
pub mod server;
pub mod state;
pub mod suggest;
pub mod tokens;
pub mod upstream;
