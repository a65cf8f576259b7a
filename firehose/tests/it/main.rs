//! Integration tests of the delivery pipeline with parts a server never plugs in (a
//! transform that panics): one test binary, one module per concern.

mod crash_guard;
