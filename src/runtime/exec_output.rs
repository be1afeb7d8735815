//! ExecSync's captured output: read to the end, kept up to a budget.
//!
//! A command's pipes are always read until they close, however much it
//! writes: output past the budget is read and discarded, so the command
//! never blocks on a full pipe. What is kept must fit in one response the
//! kubelet accepts (its gRPC receive limit is 16 MiB for the whole
//! message), so stdout and stderr share one budget, split by [`fit`].

use tokio::io::{AsyncRead, AsyncReadExt};

/// The kubelet's gRPC receive limit for a CRI response.
const KUBELET_MAX_RESPONSE: usize = 16 << 20;
/// Room left for the response's protobuf framing (two field tags and
/// lengths, the exit code) with plenty to spare.
const RESPONSE_FRAMING: usize = 4 << 10;
/// Output kept from stdout and stderr together.
pub(super) const MAX_OUTPUT: usize = KUBELET_MAX_RESPONSE - RESPONSE_FRAMING;

/// One stream's output as read so far.
#[derive(Debug, Default)]
pub(super) struct Captured {
    pub data: Vec<u8>,
    /// Bytes read past [`MAX_OUTPUT`] and thrown away.
    pub discarded: u64,
}

impl Captured {
    /// Reads `from` to its end, keeping at most [`MAX_OUTPUT`] bytes. What
    /// was read stays in `self` when the caller stops waiting early.
    pub(super) async fn read_all(
        &mut self,
        mut from: impl AsyncRead + Unpin,
    ) -> std::io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = from.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            let keep = n.min(MAX_OUTPUT - self.data.len());
            self.data.extend_from_slice(&buf[..keep]);
            self.discarded += (n - keep) as u64;
        }
    }
}

/// Trims stdout and stderr to [`MAX_OUTPUT`] together: a stream that
/// needs no more than half keeps all of it and the other gets the rest;
/// when both need more, each keeps half. Returns the bytes cut here.
pub(super) fn fit(stdout: &mut Vec<u8>, stderr: &mut Vec<u8>) -> u64 {
    let (out, err) = (stdout.len(), stderr.len());
    if out + err <= MAX_OUTPUT {
        return 0;
    }
    let half = MAX_OUTPUT / 2;
    let (keep_out, keep_err) = if out <= half {
        (out, MAX_OUTPUT - out)
    } else if err <= half {
        (MAX_OUTPUT - err, err)
    } else {
        (half, MAX_OUTPUT - half)
    };
    stdout.truncate(keep_out);
    stderr.truncate(keep_err);
    ((out - keep_out) + (err - keep_err)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn output_past_the_budget_is_read_and_discarded() {
        let (mut w, r) = tokio::io::duplex(64 * 1024);
        let total = MAX_OUTPUT + 3 * 64 * 1024 + 17;
        let writer = tokio::spawn(async move {
            let chunk = vec![b'x'; 64 * 1024];
            let mut left = total;
            while left > 0 {
                let n = left.min(chunk.len());
                w.write_all(&chunk[..n]).await.unwrap();
                left -= n;
            }
        });
        let mut c = Captured::default();
        c.read_all(r).await.unwrap();
        writer.await.unwrap();
        assert_eq!(c.data.len(), MAX_OUTPUT);
        assert_eq!(c.discarded, (total - MAX_OUTPUT) as u64);
    }

    #[test]
    fn output_under_the_budget_is_kept_whole() {
        let (mut o, mut e) = (vec![1; 10], vec![2; 20]);
        assert_eq!(fit(&mut o, &mut e), 0);
        assert_eq!((o.len(), e.len()), (10, 20));
    }

    #[test]
    fn a_small_stream_is_kept_and_the_big_one_gets_the_rest() {
        let (mut o, mut e) = (vec![1; MAX_OUTPUT], vec![2; 100]);
        assert_eq!(fit(&mut o, &mut e), 100);
        assert_eq!((o.len(), e.len()), (MAX_OUTPUT - 100, 100));
        let (mut o, mut e) = (vec![1; 5], vec![2; MAX_OUTPUT]);
        assert_eq!(fit(&mut o, &mut e), 5);
        assert_eq!((o.len(), e.len()), (5, MAX_OUTPUT - 5));
    }

    #[test]
    fn two_big_streams_get_half_each() {
        let (mut o, mut e) = (vec![1; MAX_OUTPUT], vec![2; MAX_OUTPUT]);
        assert_eq!(fit(&mut o, &mut e), MAX_OUTPUT as u64);
        assert_eq!(o.len() + e.len(), MAX_OUTPUT);
        assert_eq!(o.len(), MAX_OUTPUT / 2);
    }
}
