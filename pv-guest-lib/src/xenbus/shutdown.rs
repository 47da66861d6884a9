//! The toolstack's shutdown protocol: `xl shutdown/reboot/...` writes the
//! request to the guest's `control/shutdown` node; the guest watches it,
//! acknowledges by writing an empty value (in a transaction, so the
//! toolstack sees the guest took it), then acts. Values it does not handle
//! are left unacknowledged (the toolstack times out and says so), as
//! Linux's `drivers/xen/manage.c` does. [`crate::domu::ShutdownWatcher`]
//! is the whole protocol for an ordinary domain. The guest advertises what
//! it supports in `control/feature-<name>` (as Linux does).

use super::{Transport, Xenbus, XsErr, XsError, NO_TX};

/// The watched node, relative to the domain's home path.
pub const SHUTDOWN_NODE: &str = "control/shutdown";
/// The token of the shutdown watch.
pub const SHUTDOWN_TOKEN: &str = "control-shutdown";

/// What the toolstack asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownRequest {
    /// `poweroff` (or `halt`): shut down.
    Poweroff,
    /// `reboot`.
    Reboot,
    /// `suspend`: save state and suspend (for save/migrate).
    Suspend,
    /// `crash`: crash (for a core dump).
    Crash,
}

impl ShutdownRequest {
    /// Parses the value of `control/shutdown`.
    pub fn parse(v: &[u8]) -> Option<ShutdownRequest> {
        match v {
            b"poweroff" | b"halt" => Some(ShutdownRequest::Poweroff),
            b"reboot" => Some(ShutdownRequest::Reboot),
            b"suspend" => Some(ShutdownRequest::Suspend),
            b"crash" => Some(ShutdownRequest::Crash),
            _ => None,
        }
    }

    /// The value the toolstack writes.
    pub fn as_str(self) -> &'static str {
        match self {
            ShutdownRequest::Poweroff => "poweroff",
            ShutdownRequest::Reboot => "reboot",
            ShutdownRequest::Suspend => "suspend",
            ShutdownRequest::Crash => "crash",
        }
    }
}

/// A value found in `control/shutdown` by [`Xenbus::check_shutdown_with`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pending {
    /// A request the guest takes: it has been acknowledged (the node now
    /// holds ""). `value` is what the toolstack wrote (`"halt"` parses as
    /// [`ShutdownRequest::Poweroff`]).
    Taken {
        /// The request.
        request: ShutdownRequest,
        /// The raw value.
        value: alloc::string::String,
    },
    /// A value the guest does not handle (an unknown word, or a request it
    /// refused): left in place, unacknowledged, so the toolstack times out
    /// and reports that the guest did not acknowledge it (as Linux does).
    Refused {
        /// The request, if the value is one.
        request: Option<ShutdownRequest>,
        /// The raw value (lossy UTF-8).
        value: alloc::string::String,
    },
}

impl<T: Transport> Xenbus<T> {
    /// Advertises `control/feature-{poweroff,reboot,suspend}` (best effort)
    /// and watches `control/shutdown`.
    pub fn watch_shutdown(&mut self) -> Result<(), XsError> {
        for f in ["poweroff", "reboot", "suspend"] {
            let mut path = alloc::string::String::from("control/feature-");
            path.push_str(f);
            let _ = self.write(NO_TX, &path, b"1");
        }
        self.watch(SHUTDOWN_NODE, SHUTDOWN_TOKEN)
    }

    /// Reads `control/shutdown` in a transaction and, if it holds a request
    /// `accept` takes, acknowledges it by writing "" (so the toolstack sees
    /// the guest took it). `None` if the node is empty or missing.
    pub fn check_shutdown_with(
        &mut self,
        accept: impl Fn(ShutdownRequest) -> bool,
    ) -> Result<Option<Pending>, XsError> {
        self.transaction(|xb, tx| {
            let v = match xb.read(tx, SHUTDOWN_NODE) {
                Ok(v) => v,
                Err(XsError::Xs(XsErr::ENOENT)) => return Ok(None),
                Err(e) => return Err(e),
            };
            if v.is_empty() {
                return Ok(None);
            }
            let value = alloc::string::String::from_utf8_lossy(&v).into_owned();
            let request = ShutdownRequest::parse(&v);
            match request {
                Some(request) if accept(request) => {
                    xb.write(tx, SHUTDOWN_NODE, b"")?;
                    Ok(Some(Pending::Taken { request, value }))
                }
                _ => Ok(Some(Pending::Refused { request, value })),
            }
        })
    }

    /// Reads and acknowledges a pending shutdown request: `None` if there is
    /// none (empty or missing node) or it is not one we know (that is left
    /// unacknowledged, as Linux does).
    pub fn check_shutdown(&mut self) -> Result<Option<ShutdownRequest>, XsError> {
        Ok(match self.check_shutdown_with(|_| true)? {
            Some(Pending::Taken { request, .. }) => Some(request),
            _ => None,
        })
    }

    /// Waits for the toolstack's next shutdown request (call
    /// [`Xenbus::watch_shutdown`] first). Events of other watches that
    /// arrive meanwhile are dropped.
    pub fn wait_shutdown(&mut self) -> Result<ShutdownRequest, XsError> {
        loop {
            let ev = self.wait_event()?;
            if ev.token != SHUTDOWN_TOKEN {
                continue;
            }
            if let Some(r) = self.check_shutdown()? {
                return Ok(r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        for r in [
            ShutdownRequest::Poweroff,
            ShutdownRequest::Reboot,
            ShutdownRequest::Suspend,
            ShutdownRequest::Crash,
        ] {
            assert_eq!(ShutdownRequest::parse(r.as_str().as_bytes()), Some(r));
        }
        assert_eq!(
            ShutdownRequest::parse(b"halt"),
            Some(ShutdownRequest::Poweroff)
        );
        assert_eq!(ShutdownRequest::parse(b""), None);
        assert_eq!(ShutdownRequest::parse(b"explode"), None);
    }
}
