//! One audit line: its fields, bounded and serialised as JSON.

use serde::Serialize;

/// IDs and names are cut at this many bytes: they come from the kubelet,
/// but an image name is the pod author's, and a line must stay one
/// journal datagram.
const MAX_FIELD: usize = 512;
/// The whole recorded command, all arguments together.
const MAX_COMMAND: usize = 4096;
/// The error message of a failed call.
const MAX_MESSAGE: usize = 1024;

/// What one CRI call did; `None` fields are left out of the line.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Entry {
    pub time: String,
    pub method: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// The gRPC code's name (`OK`, `NotFound`, ...).
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: f64,
}

impl Entry {
    pub(crate) fn new(method: &'static str) -> Self {
        Self {
            time: crate::monitor::timestamp::rfc3339_nano(std::time::SystemTime::now()),
            method,
            uid: None,
            gid: None,
            pid: None,
            pod: None,
            container: None,
            name: None,
            image: None,
            command: None,
            outcome: "OK",
            error: None,
            duration_ms: 0.0,
        }
    }

    pub(crate) fn set_pod(&mut self, id: &str) {
        self.pod = nonempty(id);
    }

    pub(crate) fn set_container(&mut self, id: &str) {
        self.container = nonempty(id);
    }

    pub(crate) fn set_name(&mut self, name: &str) {
        self.name = nonempty(name);
    }

    pub(crate) fn set_image(&mut self, image: &str) {
        self.image = nonempty(image);
    }

    pub(crate) fn set_command(&mut self, cmd: &[String]) {
        let mut left = MAX_COMMAND;
        let mut kept = Vec::new();
        for arg in cmd {
            if left == 0 {
                kept.push("…".to_owned());
                break;
            }
            let arg = cut(arg, left);
            left = left.saturating_sub(arg.len());
            kept.push(arg);
        }
        self.command = Some(kept);
    }

    pub(crate) fn set_outcome(&mut self, code: tonic::Code, message: &str) {
        self.outcome = crate::metrics::code_name(code as i32);
        self.error = if code == tonic::Code::Ok {
            None
        } else {
            Some(cut(message, MAX_MESSAGE))
        };
    }

    /// The line, without its newline.
    pub(crate) fn to_json(&self) -> String {
        // Only strings, numbers and options: serialisation cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

fn nonempty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| cut(s, MAX_FIELD))
}

/// `s` cut to at most `max` bytes on a character boundary, marked with
/// `…` when cut.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_one_json_object_without_empty_fields() {
        let mut e = Entry::new("StopContainer");
        e.uid = Some(0);
        e.pid = Some(42);
        e.set_container("abc");
        e.set_pod("");
        e.set_outcome(
            tonic::Code::NotFound,
            "container \"abc\" not found\nsecond line",
        );
        let line = e.to_json();
        assert!(!line.contains('\n'), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["method"], "StopContainer");
        assert_eq!(v["uid"], 0);
        assert_eq!(v["pid"], 42);
        assert_eq!(v["container"], "abc");
        assert_eq!(v["outcome"], "NotFound");
        assert!(v.get("pod").is_none());
        assert!(v.get("gid").is_none());
        assert!(v["error"].as_str().unwrap().contains("second line"));
    }

    #[test]
    fn long_fields_and_commands_are_cut_on_character_boundaries() {
        let mut e = Entry::new("ExecSync");
        e.set_image(&"é".repeat(1000));
        let image = e.image.clone().unwrap();
        assert!(image.len() <= MAX_FIELD + "…".len());
        assert!(image.ends_with('…'));
        let cmd: Vec<String> = (0..100).map(|_| "x".repeat(100)).collect();
        e.set_command(&cmd);
        let kept = e.command.clone().unwrap();
        let total: usize = kept.iter().map(String::len).sum();
        assert!(total <= MAX_COMMAND + 2 * "…".len(), "{total}");
        assert_eq!(kept.last().unwrap(), "…");
    }
}
