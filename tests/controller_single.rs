//! The controllers against the real apiserver, publishing to the
//! single Redis node.

mod controller;
mod support;

controller_cases!(controller::Redis::Single);
