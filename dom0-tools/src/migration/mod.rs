//! Saving, restoring and migrating domains (issue 7): Xen's migration
//! stream v2 ([`stream`]), the xl and libxl layers around it
//! ([`savefile`]), and the order an HVM domain's image is written and
//! read in ([`image`]); a PV domain's ([`pv`]).

pub mod image;
pub mod pv;
pub mod savefile;
pub mod stream;
