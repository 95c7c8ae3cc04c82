//! The one integration-test binary (one binary keeps link times down with the AWS SDK).

mod support;

mod audit_trail;
mod aws_adapter;
mod aws_capacity;
mod aws_causes;
mod budget;
mod capacity_plan;
mod causes;
mod cli;
mod cli_output;
mod config;
mod contract_reads;
mod controller_moto;
mod demo;
mod diagnose_plan;
mod extremes;
mod faults;
mod first_hour;
mod generate;
mod http;
mod investigate;
mod json_outputs;
mod metrics;
mod pacing;
mod policy_files;
mod policy_loading;
mod read_only;
mod reload;
mod scenarios;
mod scenarios_capacity;
mod shared_budget;
mod sim_account;
mod sim_capacity;
mod sim_reads;
mod supervision;
