//! Helpers shared by the media scenario tests.
#![allow(dead_code)]

pub mod net;
pub mod oggopus;
pub mod speech;
