//! Dom0's own tools (xl, the domain builder, back-ends) as xenstore
//! clients without a ring: [`LocalTransport`] lets pv-guest-lib's
//! [`Xenbus`](pv_guest_lib::xenbus::Xenbus) client speak the wire protocol
//! to an in-process [`Xenstored`] connection, so Dom0 code uses the same
//! API as a guest (and its requests get the same checks).

use pv_guest_lib::xenbus::wire::Message;
use pv_guest_lib::xenbus::{Transport, XsError};

use super::{ConnId, Host, Xenstored};

/// A [`Transport`] into an in-process connection of `xs`. Replies are
/// produced synchronously, so `wait` never blocks (it gives up).
pub struct LocalTransport<'a, H: Host> {
    xs: &'a mut Xenstored<H>,
    conn: ConnId,
}

impl<'a, H: Host> LocalTransport<'a, H> {
    /// A transport for `conn` (e.g. [`super::DOM0_CONN`] or one from
    /// [`Xenstored::connect_local`]).
    pub fn new(xs: &'a mut Xenstored<H>, conn: ConnId) -> Self {
        LocalTransport { xs, conn }
    }

    /// The daemon.
    pub fn xenstored(&mut self) -> &mut Xenstored<H> {
        self.xs
    }
}

impl<H: Host> Transport for LocalTransport<'_, H> {
    fn send(&mut self, data: &[u8]) -> Result<usize, XsError> {
        self.xs.handle(self.conn, data);
        Ok(data.len())
    }

    fn recv(&mut self) -> Result<Option<Message>, XsError> {
        match self.xs.take_output(self.conn) {
            Some(m) => Message::decode(&m).map(Some).ok_or(XsError::Protocol),
            None => Ok(None),
        }
    }

    fn wait(&mut self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xenstore::{MemHost, Quotas, DOM0_CONN};
    use pv_guest_lib::xenbus::{Xenbus, XsErr, NO_TX};

    #[test]
    fn dom0_uses_the_client_api() {
        let mut xs = Xenstored::new(MemHost::default(), Quotas::default());
        let g = xs.connect_local(4);
        {
            let mut x = Xenbus::new(LocalTransport::new(&mut xs, DOM0_CONN));
            x.write(NO_TX, "/local/domain/4/k", b"v").unwrap();
            x.watch("/local/domain/4", "w").unwrap();
            assert_eq!(x.next_event().unwrap().unwrap().token, "w");
            let r = x
                .transaction(|x, tx| x.read(tx, "/local/domain/4/k"))
                .unwrap();
            assert_eq!(r, b"v");
        }
        let mut guest = Xenbus::new(LocalTransport::new(&mut xs, g));
        assert_eq!(guest.read(NO_TX, "k"), Err(XsError::Xs(XsErr::EACCES)));
    }
}
