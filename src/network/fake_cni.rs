//! Test-only CNI plugins: shell scripts in a temporary bin dir that record
//! each call (plugin, verb, the pod's environment, stdin) and answer as a
//! real plugin would, or fail on request. Lets the runner's verbs be tested
//! without root and without real plugins installed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::cni::Runner;

/// One call per line: `<plugin> <VERB> id=<CNI_CONTAINERID> netns=<..>
/// ifname=<..>`, empty values where the variable was not set.
const SCRIPT: &str = r#"#!/bin/sh
d='@DIR@'
n=$(basename "$0")
echo "$n $CNI_COMMAND id=${CNI_CONTAINERID-} netns=${CNI_NETNS-} ifname=${CNI_IFNAME-}" >> "$d/log"
cat > "$d/$n.$CNI_COMMAND.json"
if [ -e "$d/fail-$CNI_COMMAND" ]; then
    printf '{"code":50,"msg":"plugin not available","details":"told to fail"}'
    exit 1
fi
if [ "$CNI_COMMAND" = ADD ]; then
    printf '{"cniVersion":"1.1.0","ips":[{"address":"10.9.0.2/24"}]}'
fi
"#;

/// Writes without end to stdout, whatever the verb.
const LOUD: &str = "#!/bin/sh\ncat > /dev/null\nyes '{}'\n";

/// Never reads its stdin and does not answer: `exec`, so that killing the
/// plugin leaves no `sleep` behind.
const STUCK: &str = "#!/bin/sh\nexec sleep 120\n";

/// Logs 2 MiB to stderr, then answers ADD and fails every other verb
/// without an error result.
const CHATTY: &str = r#"#!/bin/sh
cat > /dev/null
yes 'debug: a line of chatter' | head -c 2097152 >&2
if [ "$CNI_COMMAND" = ADD ]; then
    printf '{"cniVersion":"1.1.0","ips":[{"address":"10.9.0.3/24"}]}'
    exit 0
fi
exit 1
"#;

pub(super) struct FakePlugins {
    dir: tempfile::TempDir,
}

impl FakePlugins {
    /// Recording plugins named `types`, and `loud`, `stuck` and `chatty`.
    pub(super) fn new(types: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::fs::create_dir(dir.path().join("conf")).unwrap();
        let script = SCRIPT.replace("@DIR@", &dir.path().display().to_string());
        for t in types {
            install(&dir.path().join("bin").join(t), &script);
        }
        install(&dir.path().join("bin/loud"), LOUD);
        install(&dir.path().join("bin/stuck"), STUCK);
        install(&dir.path().join("bin/chatty"), CHATTY);
        Self { dir }
    }

    pub(super) fn runner(&self) -> Runner {
        Runner::new(vec![self.dir.path().join("bin")])
    }

    pub(super) fn conf_dir(&self) -> PathBuf {
        self.dir.path().join("conf")
    }

    /// The calls so far, and forgets them.
    pub(super) fn take_log(&self) -> Vec<String> {
        let path = self.dir.path().join("log");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        text.lines().map(str::to_owned).collect()
    }

    /// What `plugin` last read on stdin for `verb`.
    pub(super) fn stdin(&self, plugin: &str, verb: &str) -> Value {
        let path = self.dir.path().join(format!("{plugin}.{verb}.json"));
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    }

    /// Makes every plugin fail `verb` (with code 50), or succeed again.
    pub(super) fn fail(&self, verb: &str, fail: bool) {
        let path = self.dir.path().join(format!("fail-{verb}"));
        if fail {
            std::fs::write(path, "").unwrap();
        } else {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn install(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}
