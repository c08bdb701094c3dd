//! Helpers shared by the media scenario tests.
#![allow(dead_code)]

pub mod net;
