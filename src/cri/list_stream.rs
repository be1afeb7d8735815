//! The Stream* RPCs (`StreamPodSandboxes`, `StreamContainers`, the stats,
//! metrics and image streams): what the matching List* call returns, sent
//! as a server stream of bounded chunks, so that a node with many pods
//! never needs one response larger than a client's receive limit (the
//! kubelet's is 16 MiB).
//!
//! Each handler gathers its domain records with the same runtime call and
//! filter as its List call; this module converts them to proto messages
//! one chunk at a time, as tonic reads the stream. Records are dropped as
//! they are converted, so the list is never held both as records and as a
//! whole proto response.
//!
//! A chunk holds at most [`MAX_ITEMS`] items and, unless one item alone is
//! larger, at most [`MAX_BYTES`] encoded bytes. Every Stream*Response has a
//! `repeated` field, and a client rebuilds the list from all the messages
//! until the end of the stream, so an empty list is a stream that ends
//! without a message: an empty message would tell it nothing.
//!
//! An error of the runtime call (the status the List call would answer)
//! ends the call before the stream starts; a Go client sees it from its
//! first `Recv`, a tonic client from the call itself.

use std::pin::Pin;

use tokio_stream::Stream;
use tonic::Status;

/// A server-streaming response.
pub(super) type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Items in one message at most.
const MAX_ITEMS: usize = 100;

/// Encoded bytes of one message at most: a quarter of the kubelet's 16 MiB
/// receive limit, so a chunk of items with large labels or annotations
/// still fits.
const MAX_BYTES: usize = 4 << 20;

/// The size limits of one message.
#[derive(Debug, Clone, Copy)]
struct Limits {
    items: usize,
    bytes: usize,
}

impl Limits {
    const DEFAULT: Self = Self {
        items: MAX_ITEMS,
        bytes: MAX_BYTES,
    };
}

/// `records` as a stream of `message`s, each holding one chunk of the
/// records turned into proto items by `convert`, in order.
pub(super) fn chunked<D, P, R>(
    records: Vec<D>,
    convert: impl FnMut(&D) -> P + Send + 'static,
    message: impl FnMut(Vec<P>) -> R + Send + 'static,
) -> ResponseStream<R>
where
    D: Send + 'static,
    P: prost::Message + Send + 'static,
    R: Send + 'static,
{
    chunked_with(records, convert, message, Limits::DEFAULT)
}

fn chunked_with<D, P, R>(
    records: Vec<D>,
    convert: impl FnMut(&D) -> P + Send + 'static,
    message: impl FnMut(Vec<P>) -> R + Send + 'static,
    limits: Limits,
) -> ResponseStream<R>
where
    D: Send + 'static,
    P: prost::Message + Send + 'static,
    R: Send + 'static,
{
    let chunks = Chunks {
        records: records.into_iter(),
        convert,
        carried: None,
        limits,
    };
    Box::pin(tokio_stream::iter(chunks.map(message).map(Ok)))
}

/// The proto items of `records`, grouped into chunks within `limits`.
struct Chunks<I, C, P> {
    records: I,
    convert: C,
    /// An item converted for the previous chunk that did not fit it.
    carried: Option<P>,
    limits: Limits,
}

impl<I, C, P> Iterator for Chunks<I, C, P>
where
    I: Iterator,
    C: FnMut(&I::Item) -> P,
    P: prost::Message,
{
    type Item = Vec<P>;

    fn next(&mut self) -> Option<Vec<P>> {
        let mut chunk = Vec::new();
        let mut bytes = 0;
        while chunk.len() < self.limits.items {
            let item = match self.carried.take() {
                Some(item) => item,
                None => match self.records.next() {
                    Some(record) => (self.convert)(&record),
                    None => break,
                },
            };
            let size = framed_len(&item);
            // An item larger than the limit goes alone rather than never.
            if !chunk.is_empty() && bytes + size > self.limits.bytes {
                self.carried = Some(item);
                break;
            }
            bytes += size;
            chunk.push(item);
        }
        (!chunk.is_empty()).then_some(chunk)
    }
}

/// What `item` adds to the encoded response: its bytes, their length and
/// the field's tag (one byte: every Stream*Response carries its items in
/// field 1).
fn framed_len(item: &impl prost::Message) -> usize {
    let len = item.encoded_len();
    1 + prost::length_delimiter_len(len) + len
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use tokio_stream::StreamExt;

    use super::*;
    use crate::cri::v1;

    fn image(id: &str, tags: usize) -> v1::Image {
        v1::Image {
            id: id.to_owned(),
            repo_tags: (0..tags).map(|i| format!("r/{id}:{i}")).collect(),
            ..Default::default()
        }
    }

    /// The images of each message of `chunked_with` over `ids`.
    async fn messages(ids: Vec<(String, usize)>, limits: Limits) -> Vec<v1::StreamImagesResponse> {
        let stream = chunked_with(
            ids,
            |(id, tags)| image(id, *tags),
            |images| v1::StreamImagesResponse { images },
            limits,
        );
        stream
            .map(|m| m.expect("the stream has no errors"))
            .collect()
            .await
    }

    fn ids(messages: &[v1::StreamImagesResponse]) -> Vec<String> {
        messages
            .iter()
            .flat_map(|m| m.images.iter().map(|i| i.id.clone()))
            .collect()
    }

    #[tokio::test]
    async fn an_empty_list_sends_no_message() {
        let sent = messages(Vec::new(), Limits::DEFAULT).await;
        assert!(sent.is_empty(), "{sent:?}");
    }

    #[tokio::test]
    async fn items_go_in_order_in_chunks_of_at_most_100() {
        let all: Vec<_> = (0..250).map(|i| (format!("{i:03}"), 1)).collect();
        let expected: Vec<String> = all.iter().map(|(id, _)| id.clone()).collect();
        let stream = chunked(
            all,
            |(id, tags)| image(id, *tags),
            |images| v1::StreamImagesResponse { images },
        );
        let sent: Vec<_> = stream.map(|m| m.unwrap()).collect().await;
        let sizes: Vec<usize> = sent.iter().map(|m| m.images.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        assert_eq!(ids(&sent), expected);
    }

    #[tokio::test]
    async fn a_list_that_fills_one_chunk_exactly_sends_one_message() {
        let all: Vec<_> = (0..100).map(|i| (i.to_string(), 0)).collect();
        let sent = messages(all, Limits::DEFAULT).await;
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].images.len(), 100);
    }

    #[tokio::test]
    async fn large_items_split_chunks_by_encoded_size() {
        // Items of 1.3 kB under a 3 kB limit: two per message; one of
        // 14 kB goes alone, and nothing is lost or reordered.
        let limits = Limits {
            items: 100,
            bytes: 3000,
        };
        let mut all: Vec<_> = (0..5).map(|i| (format!("small{i}"), 100)).collect();
        all.insert(2, ("huge".to_owned(), 1000));
        let expected: Vec<String> = all.iter().map(|(id, _)| id.clone()).collect();
        let sent = messages(all, limits).await;
        assert_eq!(ids(&sent), expected);
        let sizes: Vec<usize> = sent.iter().map(|m| m.images.len()).collect();
        assert_eq!(sizes, [2, 1, 2, 1]);
        assert_eq!(sent[1].images[0].id, "huge");
        for m in &sent {
            // The accounting is the real encoded size of the message.
            assert!(
                m.images.len() == 1 || m.encoded_len() <= limits.bytes,
                "{} bytes in {} items",
                m.encoded_len(),
                m.images.len()
            );
        }
    }

    #[test]
    fn framed_len_is_what_an_item_adds_to_its_message() {
        for tags in [0, 1, 10, 1000] {
            let item = image("x", tags);
            let one = v1::StreamImagesResponse {
                images: vec![item.clone()],
            };
            let two = v1::StreamImagesResponse {
                images: vec![item.clone(), item.clone()],
            };
            assert_eq!(framed_len(&item), one.encoded_len());
            assert_eq!(2 * framed_len(&item), two.encoded_len());
        }
    }
}
