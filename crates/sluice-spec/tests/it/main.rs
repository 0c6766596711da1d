//! Integration tests of the spec crate (one binary; modules by concept).

mod expectations;
mod topology;
