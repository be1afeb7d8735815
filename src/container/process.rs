//! The process pvecri-init executes: the CRI config merged with the image
//! config (Kubernetes semantics for command/args vs entrypoint/cmd, env
//! override by name, user resolution in the image's /etc/passwd and
//! /etc/group). Written as `spec.json` into the container's run dir.

use super::ContainerConfig;
use crate::image::spec::RunConfig;

pub(crate) use pvecri_spec::DEFAULT_PATH;

/// The contract with pvecri-init (docs/lifecycle.md).
pub(crate) use pvecri_spec::ProcessSpec;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ProcessError {
    #[error("no command: neither the container config nor the image sets one")]
    NoCommand,
    #[error("user {0:?} not found in the image's /etc/passwd")]
    UnknownUser(String),
    #[error("group {0:?} not found in the image's /etc/group")]
    UnknownGroup(String),
    #[error("run_as_group needs run_as_user or run_as_username")]
    GroupWithoutUser,
}

/// Argv per Kubernetes: `command` replaces the entrypoint (and drops the
/// image's cmd), `args` replaces the cmd.
pub(crate) fn argv(
    config: &ContainerConfig,
    image: &RunConfig,
) -> Result<Vec<String>, ProcessError> {
    let entrypoint = if config.command.is_empty() {
        image.entrypoint.clone().unwrap_or_default()
    } else {
        config.command.clone()
    };
    let args = if !config.args.is_empty() {
        config.args.clone()
    } else if config.command.is_empty() {
        image.cmd.clone().unwrap_or_default()
    } else {
        Vec::new()
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(args).collect();
    if argv.is_empty() {
        return Err(ProcessError::NoCommand);
    }
    Ok(argv)
}

/// Image env, then the config's, later names winning; PATH defaulted.
pub(crate) fn env(
    config: &ContainerConfig,
    image: &RunConfig,
    hostname: &str,
    home: &str,
) -> Vec<String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| match out.iter_mut().find(|(n, _)| n == k) {
        Some(slot) => slot.1 = v.to_owned(),
        None => out.push((k.to_owned(), v.to_owned())),
    };
    set("PATH", DEFAULT_PATH);
    set("HOSTNAME", hostname);
    for kv in image.env.iter().flatten() {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        set(k, v);
    }
    for (k, v) in &config.envs {
        set(k, v);
    }
    if !out.iter().any(|(k, _)| k == "HOME") {
        out.push(("HOME".into(), home.to_owned()));
    }
    out.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Resolved identity: uid, gid, supplementary groups, home directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
}

/// Resolves the user per CRI precedence (run_as_user / run_as_username,
/// then the image's USER), reading the image's passwd and group texts.
pub(crate) fn identity(
    config: &ContainerConfig,
    image: &RunConfig,
    passwd: &str,
    group: &str,
) -> Result<Identity, ProcessError> {
    if config.run_as_group.is_some()
        && config.run_as_user.is_none()
        && config.run_as_username.is_empty()
    {
        return Err(ProcessError::GroupWithoutUser);
    }
    let image_user = image.user.clone().unwrap_or_default();
    let (user_part, group_part) = match image_user.split_once(':') {
        Some((u, g)) => (u.to_owned(), Some(g.to_owned())),
        None => (image_user.clone(), None),
    };
    let users = parse_passwd(passwd);
    let (uid, mut gid, home, name) = if let Some(uid) = config.run_as_user {
        let uid = uid as u32;
        match users.iter().find(|u| u.uid == uid) {
            Some(u) => (uid, u.gid, u.home.clone(), Some(u.name.clone())),
            None => (uid, 0, "/".to_owned(), None),
        }
    } else {
        let wanted = if !config.run_as_username.is_empty() {
            config.run_as_username.clone()
        } else {
            user_part
        };
        if wanted.is_empty() {
            let root = users.iter().find(|u| u.uid == 0);
            (
                0,
                0,
                root.map_or("/root".to_owned(), |u| u.home.clone()),
                Some("root".to_owned()),
            )
        } else if let Ok(uid) = wanted.parse::<u32>() {
            match users.iter().find(|u| u.uid == uid) {
                Some(u) => (uid, u.gid, u.home.clone(), Some(u.name.clone())),
                None => (uid, 0, "/".to_owned(), None),
            }
        } else {
            let u = users
                .iter()
                .find(|u| u.name == wanted)
                .ok_or_else(|| ProcessError::UnknownUser(wanted.clone()))?;
            (u.uid, u.gid, u.home.clone(), Some(u.name.clone()))
        }
    };
    let groups_db = parse_group(group);
    if let Some(g) = config.run_as_group {
        gid = g as u32;
    } else if let (Some(g), None) = (&group_part, config.run_as_user) {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups_db
                .iter()
                .find(|e| &e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| ProcessError::UnknownGroup(g.clone()))?,
        };
    }
    let mut groups: Vec<u32> = Vec::new();
    if let (Some(name), false) = (&name, config.security.strict_supplemental_groups) {
        for g in groups_db
            .iter()
            .filter(|g| g.members.iter().any(|m| m == name))
        {
            if g.gid != gid && !groups.contains(&g.gid) {
                groups.push(g.gid);
            }
        }
    }
    for g in &config.supplemental_groups {
        let g = *g as u32;
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    Ok(Identity {
        uid,
        gid,
        groups,
        home,
    })
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 7).then_some(())?;
            Some(PasswdEntry {
                name: f[0].to_owned(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_owned(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 4).then_some(())?;
            Some(GroupEntry {
                name: f[0].to_owned(),
                gid: f[2].parse().ok()?,
                members: f[3]
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www:/var/www:/bin/false\ndefault-user:x:1000:1000::/home/u:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwww-data:x:33:\ngroup-defined-in-image:x:50000:default-user\n";

    fn image(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> RunConfig {
        RunConfig {
            entrypoint: entrypoint.map(|v| v.iter().map(|s| s.to_string()).collect()),
            cmd: cmd.map(|v| v.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn argv_follows_kubernetes_rules() {
        let img = image(Some(&["/ep"]), Some(&["c1"]));
        let mut c = ContainerConfig::default();
        assert_eq!(argv(&c, &img).unwrap(), ["/ep", "c1"]);
        c.args = vec!["a".into()];
        assert_eq!(argv(&c, &img).unwrap(), ["/ep", "a"]);
        c.command = vec!["/cmd".into()];
        assert_eq!(argv(&c, &img).unwrap(), ["/cmd", "a"]);
        c.args.clear();
        assert_eq!(argv(&c, &img).unwrap(), ["/cmd"]);
        assert_eq!(
            argv(&ContainerConfig::default(), &image(None, None)),
            Err(ProcessError::NoCommand)
        );
    }

    #[test]
    fn env_merges_by_name() {
        let img = RunConfig {
            env: Some(vec!["PATH=/img".into(), "A=1".into()]),
            ..Default::default()
        };
        let c = ContainerConfig {
            envs: vec![("A".into(), "2".into()), ("B".into(), "3".into())],
            ..Default::default()
        };
        let e = env(&c, &img, "h", "/root");
        assert!(e.contains(&"PATH=/img".to_owned()));
        assert!(e.contains(&"A=2".to_owned()));
        assert!(e.contains(&"B=3".to_owned()));
        assert!(e.contains(&"HOSTNAME=h".to_owned()));
        assert!(e.contains(&"HOME=/root".to_owned()));
    }

    #[test]
    fn identities() {
        let img = |u: &str| RunConfig {
            user: Some(u.to_owned()),
            ..Default::default()
        };
        let c = ContainerConfig::default();
        assert_eq!(identity(&c, &img(""), PASSWD, GROUP).unwrap().uid, 0);
        let id = identity(&c, &img("www-data"), PASSWD, GROUP).unwrap();
        assert_eq!((id.uid, id.gid, id.home.as_str()), (33, 33, "/var/www"));
        let id = identity(&c, &img("1003:1004"), PASSWD, GROUP).unwrap();
        assert_eq!((id.uid, id.gid), (1003, 1004));
        let id = identity(&c, &img("www-data:1004"), PASSWD, GROUP).unwrap();
        assert_eq!((id.uid, id.gid), (33, 1004));
        let id = identity(&c, &img("1000"), PASSWD, GROUP).unwrap();
        assert_eq!(id.groups, vec![50000]);
        assert_eq!(
            identity(&c, &img("nobody-here"), PASSWD, GROUP),
            Err(ProcessError::UnknownUser("nobody-here".into()))
        );
        let c = ContainerConfig {
            run_as_user: Some(1234),
            run_as_group: Some(5678),
            supplemental_groups: vec![9, 9],
            ..Default::default()
        };
        let id = identity(&c, &img("www-data"), PASSWD, GROUP).unwrap();
        assert_eq!((id.uid, id.gid, id.groups.clone()), (1234, 5678, vec![9]));
        let c = ContainerConfig {
            run_as_group: Some(1),
            ..Default::default()
        };
        assert_eq!(
            identity(&c, &img(""), PASSWD, GROUP),
            Err(ProcessError::GroupWithoutUser)
        );
    }
}
