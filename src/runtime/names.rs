//! Name reservations: a pod (namespace/name/uid/attempt) or container
//! (pod/name/attempt) name maps to exactly one ID, claimed before any work
//! starts so that a duplicate request is refused even while the first one
//! is still in flight.

use std::collections::HashMap;
use std::sync::Mutex;

/// A name already claimed, and by which ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("already reserved by {holder}")]
pub(super) struct Taken {
    pub holder: String,
}

#[derive(Default)]
pub(super) struct Names {
    taken: Mutex<HashMap<String, String>>,
}

impl Names {
    /// Claims `key` for `id`; on conflict returns the ID that holds it.
    pub(super) fn reserve(&self, key: &str, id: &str) -> Result<(), Taken> {
        let mut taken = self.taken.lock().expect("names lock poisoned");
        match taken.get(key) {
            Some(holder) => Err(Taken {
                holder: holder.clone(),
            }),
            None => {
                taken.insert(key.to_owned(), id.to_owned());
                Ok(())
            }
        }
    }

    /// Frees `key` if `id` holds it.
    pub(super) fn release(&self, key: &str, id: &str) {
        let mut taken = self.taken.lock().expect("names lock poisoned");
        if taken.get(key).is_some_and(|holder| holder == id) {
            taken.remove(key);
        }
    }
}

/// A fresh 64-hex-digit ID, never all digits (so it can never look like a
/// Proxmox VMID to tooling that sees the LXC container name).
pub(super) fn new_id() -> String {
    loop {
        let mut bytes = [0u8; 32];
        getrandom(&mut bytes);
        let id = hex::encode(bytes);
        if !id.bytes().all(|b| b.is_ascii_digit()) {
            return id;
        }
    }
}

fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .expect("/dev/urandom is readable");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_and_release() {
        let n = Names::default();
        n.reserve("a", "1").unwrap();
        assert_eq!(n.reserve("a", "2"), Err(Taken { holder: "1".into() }));
        n.release("a", "2");
        assert!(n.reserve("a", "3").is_err());
        n.release("a", "1");
        n.reserve("a", "3").unwrap();
    }

    #[test]
    fn ids_are_hex_and_unique() {
        let a = new_id();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, new_id());
    }
}
