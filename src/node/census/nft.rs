//! pvecri's nftables state, from `nft -j list ruleset`: its tables
//! (`ip`/`ip6` `pvecri-<bridge>`, see `crate::network::nft::table_name`)
//! and the host-port elements of their maps.

use serde_json::Value;

use crate::network::nft::table_name;

/// Tables and map elements found, one line each.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Nft {
    pub tables: Vec<String>,
    pub elements: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("`nft -j list ruleset` printed something other than its JSON schema")]
pub(super) struct NftParseError(#[source] pub serde_json::Error);

/// One element as nft prints it: `tcp . 8080 : 10.78.0.5 . 80`.
fn render(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(pair) if pair.len() == 2 => {
            format!("{} : {}", render(&pair[0]), render(&pair[1]))
        }
        Value::Object(o) => match o.get("concat").and_then(Value::as_array) {
            Some(parts) => parts.iter().map(render).collect::<Vec<_>>().join(" . "),
            None => v.to_string(),
        },
        other => other.to_string(),
    }
}

/// Reads the ruleset for the tables of `bridge` (`node`: of any bridge).
pub(super) fn find(ruleset: &str, bridge: &str, node: bool) -> Result<Nft, NftParseError> {
    let doc: Value = serde_json::from_str(ruleset).map_err(NftParseError)?;
    let ours = |family: &str, name: &str| {
        matches!(family, "ip" | "ip6")
            && if node {
                name.starts_with("pvecri-")
            } else {
                name == table_name(bridge)
            }
    };
    let str_of = |o: &Value, k: &str| {
        o.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let mut out = Nft::default();
    let items = doc
        .get("nftables")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for item in &items {
        if let Some(t) = item.get("table") {
            let (family, name) = (str_of(t, "family"), str_of(t, "name"));
            if ours(&family, &name) {
                out.tables.push(format!("{family} {name}"));
            }
        }
        let Some(set) = item.get("map").or_else(|| item.get("set")) else {
            continue;
        };
        let (family, table) = (str_of(set, "family"), str_of(set, "table"));
        if !ours(&family, &table) {
            continue;
        }
        let name = str_of(set, "name");
        for e in set
            .get("elem")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            out.elements
                .push(format!("{family} {table} {name}: {}", render(e)));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `nft -j list ruleset` (nft 1.0.6) with pvecri's table of `pvecri0`
    /// holding two host ports, another bridge's, and a foreign table.
    const RULESET: &str = r#"{"nftables": [
{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
{"table": {"family": "ip", "name": "pvecri-pvecri0", "handle": 1}},
{"map": {"family": "ip", "name": "hostports_any", "table": "pvecri-pvecri0", "type": ["inet_proto", "inet_service"], "handle": 2, "map": "ipv4_addr . inet_service", "elem": [[{"concat": ["tcp", 8080]}, {"concat": ["10.78.0.5", 80]}]]}},
{"map": {"family": "ip", "name": "hostports_ip", "table": "pvecri-pvecri0", "type": ["ipv4_addr", "inet_proto", "inet_service"], "handle": 3, "map": "ipv4_addr . inet_service", "elem": [[{"concat": ["127.0.0.1", "udp", 53]}, {"concat": ["10.78.0.6", 53]}]]}},
{"chain": {"family": "ip", "table": "pvecri-pvecri0", "name": "prerouting", "handle": 4, "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"}},
{"table": {"family": "ip", "name": "pvecri-pvt-n1", "handle": 5}},
{"map": {"family": "ip", "name": "hostports_any", "table": "pvecri-pvt-n1", "type": ["inet_proto", "inet_service"], "handle": 2, "map": "ipv4_addr . inet_service"}},
{"table": {"family": "inet", "name": "pvecri-test-guard-n1", "handle": 6}},
{"table": {"family": "inet", "name": "filter", "handle": 7}},
{"set": {"family": "inet", "name": "blocked", "table": "filter", "type": "ipv4_addr", "handle": 2, "elem": ["10.0.0.1"]}}
]}"#;

    #[test]
    fn the_bridges_table_and_its_elements_are_counted() {
        let n = find(RULESET, "pvecri0", false).unwrap();
        assert_eq!(n.tables, ["ip pvecri-pvecri0"]);
        assert_eq!(
            n.elements,
            [
                "ip pvecri-pvecri0 hostports_any: tcp . 8080 : 10.78.0.5 . 80",
                "ip pvecri-pvecri0 hostports_ip: 127.0.0.1 . udp . 53 : 10.78.0.6 . 53",
            ]
        );
    }

    #[test]
    fn a_node_census_takes_every_pvecri_table_and_no_other() {
        let n = find(RULESET, "pvecri0", true).unwrap();
        assert_eq!(n.tables, ["ip pvecri-pvecri0", "ip pvecri-pvt-n1"]);
        assert_eq!(n.elements.len(), 2);
    }

    #[test]
    fn an_empty_ruleset_has_nothing_and_garbage_is_an_error() {
        let empty =
            r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}]}"#;
        assert_eq!(find(empty, "pvecri0", true).unwrap(), Nft::default());
        assert!(find("table ip x {}", "pvecri0", true).is_err());
    }
}
