//! Every integration test, in one binary: each links the whole library, so one binary
//! builds and links once (issue 27). A module a former `tests/NAME.rs`.

mod common;

mod account_keys;
mod audit;
mod cli_finds_server;
mod client_matrix;
mod commands;
mod compose;
mod dashboard;
mod decisions;
mod deployer;
mod egress;
mod egress_clients;
mod ephemeral_ports;
mod eventarc;
mod example;
mod explain;
mod fixes;
mod foundation;
mod frontdoor;
mod fuzz;
mod google_router;
mod grpc;
mod h2c;
mod hostile_tokens;
mod http_edges;
mod iam_credentials;
mod layers;
mod logging;
mod metadata;
mod pubsub;
mod readme;
mod reload;
mod scheduler;
mod streaming;
mod sts;
mod tasks;
mod token_clients;
mod token_endpoints;
mod wheel;
