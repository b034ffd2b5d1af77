//! frontdoor emulates, on one machine and offline, the part of Google Cloud that decides
//! whether one Cloud Run service may call another.
//!
//! # Architecture
//!
//! Each layer imports only from the layers above it in this list (`tests/it/layers.rs` holds
//! the code to it):
//!
//! ```text
//!   leaves   clock (time, passed in), suggest (did you mean …), logging, keys (KeySet:
//!            current + next RSA key; account keys; SystemKeys, each account's own key;
//!            keys::ca, the local CA)
//!   client_env what points a process at frontdoor: metadata server, proxy, CA files
//!   iam      policies, members, roles → Outcome
//!   config   services.yaml + the files it names (config::NamedFiles: Knative exports,
//!            JWKS, read before resolving) + the Admin APIs' changes over it
//!            (config::layer; config::fold writes it into the file) → Config, every
//!            derived value resolved
//!   tokens   tokens::jws signs and checks every JWT under per-use Rules; the ID-token
//!            shapes; the verified and minted token caches
//!   access   access tokens (ya29.…)    routing  host → service, per generation
//!   upstream http, builtin:echo, or a command the upstream::supervisor runs
//!   broker   Pub/Sub's topics, subscriptions and undelivered messages, in memory and
//!            bounded; leases, backoff, ordering keys, dead-lettering
//!   taskqueue Cloud Tasks' queues and their tasks, in memory and bounded: when each is
//!            due, rates, retries and backoff, names kept from reuse
//!   cronjobs Cloud Scheduler's jobs: when each next fires by its schedule and time zone,
//!            its run and retries
//!   triggers what Eventarc's API keeps beside its triggers (the broker's subscriptions):
//!            its operations, when each trigger was made
//!   decisions one log of every surface's decision, with its reason, to stderr through
//!            logging (a compact line, or JSON); a front-door decision's chain of checks
//!            (decisions::chain) and refusal code (decisions::codes)
//!   state    AppState = one Generation (Config, routes, revisions: built whole by a
//!            reload) + one Lasting (keys, decision log, issued tokens, caches keyed by
//!            the issuer and project they depend on, the supervisor, the CA, Reloads),
//!            their fields private; Live swaps generations on reload
//!   peer     a connection's two ends, which every listener is handed
//!   listeners (HTTP; each emulates one of Google's surfaces, and mounts nobody else's):
//!     frontdoor  *.run.app ingress: auth (the order of checks, a pure verdict; each check
//!                in auth::checks) → proxy; decided builds the decision in one place
//!     metadata   one per service: its identity, ID and access tokens (cached)
//!     google     issuer keys (and each account's own), /token, tokeninfo, IAM
//!                Credentials, STS; the Admin APIs (Cloud Run v1, Resource Manager, IAM's
//!                service accounts and keys):
//!                google::resource is the one IAM judgment they all make (a resource's
//!                policies, then the project's); google::admin checks the deployer by it
//!                and puts each change in the layer over the file (config::layer),
//!                applied through the server loop; google::pubsub, Pub/Sub's API in
//!                gRPC and REST over the broker (google::pubsub::persist keeps what
//!                it made in the layer; broker::owned says whose each resource is);
//!                google::tasks, Cloud Tasks' API the same way over the taskqueue, and
//!                google::scheduler, Cloud Scheduler's over cronjobs;
//!                google::eventarc, Eventarc's triggers (REST) over the broker and
//!                triggers;
//!                google::emulated what both share (the caller, one call in each
//!                transport)
//!   egress   the proxy every metadata listener also is: CONNECT to *.run.app and Google's
//!            API hosts ends TLS with the local CA (keys::ca) and goes to the front door
//!            or google; plain http reaches the metadata server; other hosts are refused
//!   managed  Google-managed callers: Pub/Sub's pushes (and Eventarc's, as CloudEvents)
//!            and Cloud Tasks' and Cloud Scheduler's calls, each with a token for its account, sent by one
//!            managed::send, through the front door in process (peer::ManagedCaller)
//!   ops      frontdoor's own surfaces, mounted once beside google's on its listener:
//!            introspect (decisions, status, /healthz, /metrics), explain (the front
//!            door's verdict for a pasted token, by frontdoor::auth; a permission on a
//!            resource, by google::resource), the dashboard at
//!            /frontdoor/ui/ (dashboard::events, one feed for every open page;
//!            dashboard::graph, who can call whom; the inspector)
//!   server   binds every listener first (server::bind), serves each through
//!            server::accept (limits on time, headers, connections), the front door on one
//!            runtime per core (server::per_core), runs commands (server::commands) and
//!            watches the file and the files it names (server::reload)
//!   cli      the only place that reads the environment, the clock and the terminal;
//!            cli::locate finds the running server for the commands that ask it
//! ```
//!
//! Pure modules (`config` once its files are read, `keys`, `tokens`, `iam`) know nothing
//! of HTTP. Time is passed in through [`clock::Clock`] so tests can fix it.

pub(crate) mod access;
pub(crate) mod broker;
pub mod cli;
pub mod client_env;
pub mod clock;
pub mod config;
pub(crate) mod cronjobs;
pub(crate) mod decisions;
pub(crate) mod egress;
pub(crate) mod frontdoor;
pub mod google;
pub mod iam;
pub mod keys;
pub mod logging;
pub(crate) mod managed;
pub mod metadata;
pub(crate) mod ops;
pub mod peer;
pub(crate) mod routing;
pub mod server;
pub mod state;
pub(crate) mod suggest;
pub(crate) mod taskqueue;
pub mod tokens;
pub(crate) mod triggers;
pub mod upstream;
