//! The one integration test binary (see matklad's "Delete Cargo Integration
//! Tests"): a module per feature, all driving `tale` as a user does.

mod admin_api;
mod check_corpus;
mod cli;
mod cluster;
mod crash_loop;
mod credential_forms;
mod credentials;
mod data_collector;
mod durable_calls;
mod layers;
mod leaks;
mod library_e2e;
mod limits;
mod manual_actions;
mod memory;
mod microsoft_mock;
mod mock_server;
mod mock_smtp;
mod no_panic;
mod postgres;
mod redirects;
mod run_status;
mod runtime;
mod scheduler;
mod schema;
mod serve;
mod serve_cli;
mod slow_clients;
mod special_files;
mod store_conformance;
mod story_tests;
mod substories;
mod support;
mod ui;
mod valid_stories;
