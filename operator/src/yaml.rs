//! YAML output that means the same to every reader. kubectl's YAML parser follows YAML 1.1, in
//! which a plain `yes`, `on` or `2026-01-01` is not a string; a YAML 1.2 emitter writes them
//! plain, so kubectl would read the Redis StatefulSet's `--appendonly yes` as `true`. This
//! emitter writes a string plain only when no YAML version can read it as anything else, quotes
//! it otherwise, and writes multi-line strings (the rendered `config.yaml`) as literal blocks.

use serde_json::Value;

/// `value` as a YAML document body (no `---`).
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => write_seq(&mut out, items, 0),
        scalar => {
            write_scalar(&mut out, scalar, 0);
            out.push('\n');
        }
    }
    out
}

fn write_map(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize) {
    for (key, value) in map {
        out.push_str(&" ".repeat(indent));
        write_string(out, key, indent);
        out.push(':');
        write_child(out, value, indent);
    }
}

fn write_seq(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        match item {
            Value::Object(map) if !map.is_empty() => {
                // The first key goes on the dash's line, the rest align under it.
                let mut nested = String::new();
                write_map(&mut nested, map, indent + 2);
                out.push(' ');
                out.push_str(&nested[indent + 2..]);
            }
            other => write_child(out, other, indent),
        }
    }
}

/// Writes what follows `key:` or `-`: a scalar on the same line, a collection below it.
fn write_child(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_map(out, map, indent + 2);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_seq(out, items, indent + 2);
        }
        scalar => {
            out.push(' ');
            write_scalar(out, scalar, indent);
            out.push('\n');
        }
    }
}

fn write_scalar(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(out, s, indent),
        Value::Object(_) => out.push_str("{}"),
        Value::Array(_) => out.push_str("[]"),
    }
}

fn write_string(out: &mut String, s: &str, indent: usize) {
    if is_plain_safe(s) {
        out.push_str(s);
    } else if s.contains('\n') && is_block_safe(s) {
        let body = s.strip_suffix('\n').unwrap_or(s);
        out.push_str(if s.ends_with('\n') { "|" } else { "|-" });
        for line in body.split('\n') {
            out.push('\n');
            if !line.is_empty() {
                out.push_str(&" ".repeat(indent + 2));
                out.push_str(line);
            }
        }
    } else {
        // A JSON string is a valid YAML double-quoted scalar.
        out.push_str(&serde_json::to_string(s).expect("a string serializes"));
    }
}

/// Words that YAML 1.1 or 1.2 reads as booleans or null.
const AMBIGUOUS_WORDS: [&str; 12] = [
    "y", "yes", "n", "no", "true", "false", "on", "off", "null", "~", "nan", "inf",
];

fn is_plain_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    let lower = s.to_ascii_lowercase();
    // A leading `-` is plain only when a letter or `-` follows (`--appendonly`), never `- `.
    let dash_ok = first == '-' && s[1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '-');
    (first.is_ascii_alphanumeric() || matches!(first, '/' | '_') || dash_ok)
        && s.chars().any(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:@=+".contains(c))
        && !s.ends_with(':')
        && !AMBIGUOUS_WORDS.contains(&lower.trim_start_matches(['.', '+', '-']))
        && s.parse::<f64>().is_err()
        && !looks_numeric(s)
}

/// Hex, octal, binary and sexagesimal forms YAML 1.1 reads as numbers (`0x1F`, `0o17`, `1:30`).
fn looks_numeric(s: &str) -> bool {
    let t = s.trim_start_matches(['+', '-']);
    t.starts_with("0x")
        || t.starts_with("0o")
        || t.starts_with("0b")
        || t.split(':')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
}

/// A literal block keeps every character, but its first line must not start with a space and
/// no line may carry a tab or trailing space that an editor could strip.
fn is_block_safe(s: &str) -> bool {
    !s.starts_with(' ')
        && !s.contains('\t')
        && !s.contains('\r')
        && s.split('\n').all(|l| !l.ends_with(' '))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(value: &Value) -> Value {
        let yaml = to_yaml(value);
        serde_norway::from_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
    }

    #[test]
    fn ambiguous_strings_are_quoted() {
        for s in [
            "yes",
            "no",
            "on",
            "Off",
            "true",
            "null",
            "~",
            "1.5",
            "10",
            "0x1F",
            "1:30",
            "2026-11-25",
            "",
            " lead",
            "a: b",
            "#x",
        ] {
            let yaml = to_yaml(&json!({ "k": s }));
            assert!(yaml.starts_with("k: \""), "{s:?} not quoted: {yaml}");
            assert_eq!(round_trip(&json!({ "k": s })), json!({ "k": s }));
        }
    }

    #[test]
    fn ordinary_strings_stay_plain() {
        for s in [
            "redis-server",
            "--appendonly",
            "1Gi",
            "500m",
            "apps/v1",
            "highpress.dev/config-hash",
            "likes-redis.apps.svc:6379",
        ] {
            assert_eq!(to_yaml(&json!({ "k": s })), format!("k: {s}\n"));
        }
    }

    #[test]
    fn nested_objects_sequences_and_blocks_round_trip() {
        let value = json!({
            "apiVersion": "apps/v1",
            "metadata": {"name": "x", "labels": {"a": "b"}, "annotations": {}},
            "spec": {
                "replicas": 2,
                "args": ["--appendonly", "yes", "--port", "6379"],
                "containers": [{"name": "c", "ports": [{"containerPort": 8080}], "env": []}],
                "matrix": [[1, 2], []],
                "enabled": false,
                "none": null
            },
            "data": {"config.yaml": "server:\n  port: 8080\n\nlog:\n  level: info\n"}
        });
        assert_eq!(round_trip(&value), value);
        let yaml = to_yaml(&value);
        assert!(
            yaml.contains("config.yaml: |\n    server:\n      port: 8080\n\n    log:"),
            "{yaml}"
        );
        assert!(yaml.contains("- \"yes\""), "{yaml}");
    }
}
