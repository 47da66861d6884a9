//! Saving, restoring and migrating domains (issue 7): Xen's migration
//! stream v2 ([`stream`]), the xl and libxl layers around it
//! ([`savefile`]), and the order an HVM domain's image is written and
//! read in ([`image`]).

pub mod image;
pub mod savefile;
pub mod stream;
