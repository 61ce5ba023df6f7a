//! Reading the part of a request body its handler left unread, so the connection can carry
//! the client's next request.
//!
//! actix-http closes a connection whose request body was not read to its end when the
//! answer went out (the bytes left would otherwise be parsed as the next request). An
//! answer made before the body arrived (a 404 for an unknown path, the admin listener's
//! 401 or 421, a refused content type) then races the client: the socket is closed while
//! the rest of the body is still arriving, the kernel answers those bytes with a reset, and
//! the client can lose the answer it was about to read (hyper reports `IncompleteMessage`).
//!
//! [`read_rest`] wraps an app: the handler gets the body as before, and whatever it left
//! is read and dropped before the answer goes out, up to the listener's body limit. The
//! rest of a body over the limit is not read: that connection closes, as before.

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes};
use actix_web::{Error, HttpMessage as _};
use futures::{Stream, StreamExt as _};

use crate::broker::Broker;

/// The body limit of a listener whose app has no broker: the broker's default.
const FALLBACK_LIMIT: usize = 64 * 1024;

/// The request's body, read by the handler through one handle and by [`read_rest`]
/// through the other.
struct Shared(Rc<RefCell<Payload>>);

impl Stream for Shared {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.0.try_borrow_mut() {
            Ok(mut payload) => Pin::new(&mut *payload).poll_next(cx),
            // Only one of the two reads at a time: the handler, then the middleware.
            Err(_) => Poll::Ready(Some(Err(PayloadError::Incomplete(None)))),
        }
    }
}

/// The middleware: see the module documentation.
pub async fn read_rest(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let limit = req
        .app_data::<web::Data<Arc<Broker>>>()
        .map_or(FALLBACK_LIMIT, |broker| broker.limits().max_body_bytes);
    let body = Rc::new(RefCell::new(req.take_payload()));
    let handle: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(Shared(Rc::clone(&body)));
    req.set_payload(Payload::from(handle));
    let response = next.call(req).await;
    discard(Shared(body), limit).await;
    response
}

/// Read `body` to its end and drop it, unless more than `limit` bytes remain or it fails.
async fn discard(mut body: Shared, limit: usize) {
    let mut read = 0usize;
    while let Some(Ok(chunk)) = body.next().await {
        read = read.saturating_add(chunk.len());
        if read > limit {
            return;
        }
    }
}
