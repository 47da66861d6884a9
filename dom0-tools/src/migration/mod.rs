//! Saving, restoring and migrating domains (issue 7): Xen's migration
//! stream v2 ([`stream`]).

pub mod stream;
